//! The etcd backend and the leader election against a real three-member etcd
//! (`tessera_testkit::EtcdCluster`): conditional saves, one leader at a time, takeover within the
//! lease TTL, a killed etcd member, a control plane cut off from etcd, two control planes
//! serving gRPC, one leading, and one that cannot reach its etcd at all.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use tessera_control_plane::error::StoreError;
use tessera_control_plane::leader::{ElectionOptions, Leader};
use tessera_control_plane::store::{
    EtcdOptions, EtcdStore, PersistedSettings, PersistedState, Revision, StateStore, FORMAT,
};
use tessera_proto::etcd::etcdserverpb as etcdpb;
use tessera_proto::pb;
use tessera_testkit::EtcdCluster;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// The lease TTL of these tests: etcd's minimum with its default timing (1.5 x a 1 s election
/// timeout, rounded up).
const TTL: Duration = Duration::from_secs(2);

/// What a takeover may take beyond the TTL: etcd checks for expired leases every 500 ms and
/// commits the revoke through raft; then the follower's watch fires and it takes the key.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(2);

fn state(version: u64) -> PersistedState {
    PersistedState {
        format: FORMAT,
        cluster_id: "c".repeat(40),
        generation: 1,
        version,
        current_epoch: 0,
        created: false,
        settings: PersistedSettings {
            require_full_coverage: true,
            allow_reads_when_down: false,
            node_timeout_ms: 15_000,
        },
        nodes: Vec::new(),
        slots: Vec::new(),
        migrations: Vec::new(),
        handover: None,
        removed: Vec::new(),
    }
}

async fn store(endpoints: Vec<String>, prefix: &str) -> EtcdStore {
    let options = EtcdOptions::new(endpoints, prefix);
    EtcdStore::new(options.connect().await.expect("client"), &options)
}

/// One campaigning control plane: its handle, its task, and the token that makes it resign.
struct Campaigner {
    me: String,
    leader: Leader,
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl Campaigner {
    async fn start(endpoints: Vec<String>, prefix: &str, me: &str) -> Campaigner {
        let options = EtcdOptions::new(endpoints, prefix);
        let client = options.connect().await.expect("client");
        let stop = CancellationToken::new();
        let election = ElectionOptions {
            key: options.leader_key(),
            me: me.to_string(),
            ttl: TTL,
        };
        let (leader, task) = Leader::campaign(client, election, stop.clone());
        Campaigner {
            me: me.to_string(),
            leader,
            task,
            stop,
        }
    }

    fn leads(&self) -> bool {
        self.leader.term().is_some()
    }

    /// Names `who` as the leader (itself included) and agrees on whether it is itself.
    fn follows(&self, who: &str) -> bool {
        let now = self.leader.leadership();
        now.leader.as_deref() == Some(who) && now.is_me == (who == self.me)
    }

    /// A crash: the task is gone without resigning, so the lease runs out on its own.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// A clean stop: it resigns (the lease is revoked).
    async fn resign(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the campaign ends within 5 s")
            .expect("campaign task");
    }
}

/// Waits until exactly one of `all` leads and every one names it; returns its index. Panics if
/// two ever lead at once.
async fn one_leader(all: &[&Campaigner], limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let leading: Vec<usize> = (0..all.len()).filter(|&i| all[i].leads()).collect();
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        if let [i] = leading[..] {
            if all.iter().all(|c| c.follows(&all[i].me)) {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no single leader within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `next` leads, checking every 10 ms that no one in `others` leads at the same time;
/// returns how long it took.
async fn takeover(next: &Campaigner, others: &[&Campaigner], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let both = next.leads() && others.iter().any(|c| c.leads());
        assert!(!both, "two leaders at once");
        if next.leads() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{} did not take over within {limit:?}",
            next.me
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_round_trip_and_a_stale_writer_conflicts() {
    let etcd = EtcdCluster::start().expect("etcd");
    let a = store(etcd.endpoints(), "/t/conflict").await;
    let b = store(etcd.endpoints(), "/t/conflict").await;

    let empty = a.load().await.expect("load");
    assert_eq!(empty.state, None);
    assert_eq!(empty.revision, Revision::NONE);

    let first = a.save(&state(1), Revision::NONE).await.expect("create");
    assert!(first > Revision::NONE);
    let loaded = b.load().await.expect("load");
    assert_eq!(loaded.state, Some(state(1)));
    assert_eq!(loaded.revision, first);

    // A second creator finds the key taken.
    let err = b.save(&state(9), Revision::NONE).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { found, .. } if found == first),
        "{err}"
    );

    // Both hold `first`; a writes first, so b's view is stale.
    let second = a.save(&state(2), first).await.expect("save");
    assert!(second > first, "revisions grow: {first} then {second}");
    let err = b.save(&state(3), first).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { expected, found } if expected == first && found == second),
        "{err}"
    );
    // A save that finds its very document in place is taken as its own earlier attempt whose
    // answer was lost.
    assert_eq!(
        b.save(&state(2), first).await.expect("already there"),
        second
    );
    let now = b.load().await.expect("load");
    assert_eq!(
        now.state,
        Some(state(2)),
        "the stale write overwrote nothing"
    );
    assert_eq!(now.revision, second);

    // Reloaded, b writes.
    let third = b
        .save(&state(3), now.revision)
        .await
        .expect("save after reload");
    assert_eq!(a.load().await.expect("load").revision, third);

    // Another prefix is another state.
    let other = store(etcd.endpoints(), "/t/other").await;
    assert_eq!(other.load().await.expect("load").state, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_takeover_within_the_ttl() {
    let etcd = EtcdCluster::start().expect("etcd");
    let a = Campaigner::start(etcd.endpoints(), "/t/elect", "cp-a:1").await;
    let b = Campaigner::start(etcd.endpoints(), "/t/elect", "cp-b:2").await;
    let first = one_leader(&[&a, &b], Duration::from_secs(10)).await;
    let (leader, follower) = if first == 0 { (a, b) } else { (b, a) };

    // The leader crashes: its lease runs out, and the follower takes over.
    leader.crash().await;
    let took = takeover(&follower, &[], TTL + TAKEOVER_MARGIN).await;
    eprintln!("takeover after a crash: {took:?} (TTL {TTL:?})");

    // A third joins as a follower; the leader resigns cleanly, and the third takes over
    // without waiting out the TTL.
    let c = Campaigner::start(etcd.endpoints(), "/t/elect", "cp-c:3").await;
    assert_eq!(
        one_leader(&[&follower, &c], Duration::from_secs(10)).await,
        0
    );
    let resigned = Instant::now();
    follower.resign().await;
    let took = takeover(&c, &[], TTL).await;
    eprintln!(
        "takeover after a resignation: {took:?} ({:?} after it began)",
        resigned.elapsed()
    );
    assert!(
        resigned.elapsed() < TTL,
        "a resignation frees the key at once"
    );
    c.resign().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_save_needs_the_leadership() {
    let etcd = EtcdCluster::start().expect("etcd");
    let prefix = "/t/fence";
    let a = Campaigner::start(etcd.endpoints(), prefix, "cp-a:1").await;
    let b = Campaigner::start(etcd.endpoints(), prefix, "cp-b:2").await;
    let first = one_leader(&[&a, &b], Duration::from_secs(10)).await;
    let (leader, follower) = if first == 0 { (&a, &b) } else { (&b, &a) };
    let leader_store = store(etcd.endpoints(), prefix)
        .await
        .fenced_by(leader.leader.clone());
    let follower_store = store(etcd.endpoints(), prefix)
        .await
        .fenced_by(follower.leader.clone());

    let saved = leader_store
        .save(&state(1), Revision::NONE)
        .await
        .expect("the leader saves");
    let err = follower_store.save(&state(2), saved).await.unwrap_err();
    assert!(matches!(err, StoreError::NotLeader), "{err}");

    // An intruder replaces the leader key behind the leader's back: etcd refuses the leader's
    // next save whether or not the leader has noticed yet.
    let options = EtcdOptions::new(etcd.endpoints(), prefix);
    let raw = options.connect().await.expect("client");
    let lease = raw
        .lease()
        .lease_grant(etcdpb::LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .expect("lease")
        .into_inner()
        .id;
    let key = options.leader_key().into_bytes();
    raw.kv()
        .delete_range(etcdpb::DeleteRangeRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await
        .expect("delete");
    raw.kv()
        .put(etcdpb::PutRequest {
            key,
            value: b"intruder:9".to_vec(),
            lease,
            ..Default::default()
        })
        .await
        .expect("put");
    let err = leader_store.save(&state(2), saved).await.unwrap_err();
    assert!(matches!(err, StoreError::NotLeader), "{err}");
    let loaded = leader_store.load().await.expect("load");
    assert_eq!(loaded.state, Some(state(1)));
    assert_eq!(loaded.revision, saved);

    // Both see the intruder within a round.
    tessera_testkit::wait::eventually(
        "both to follow the intruder",
        Duration::from_secs(5),
        || a.follows("intruder:9") && b.follows("intruder:9"),
    )
    .await;
    raw.lease()
        .lease_revoke(etcdpb::LeaseRevokeRequest { id: lease })
        .await
        .expect("revoke");
    one_leader(&[&a, &b], TTL + TAKEOVER_MARGIN).await;
}

/// The member etcd's raft currently follows, by index.
async fn raft_leader(etcd: &EtcdCluster) -> usize {
    for i in 0..3 {
        let options = EtcdOptions::new(vec![etcd.endpoint(i)], "/");
        let client = options.connect().await.expect("client");
        let status = client
            .maintenance()
            .status(etcdpb::StatusRequest {})
            .await
            .expect("status")
            .into_inner();
        let me = status.header.map(|h| h.member_id).unwrap_or(0);
        if status.leader == me {
            return i;
        }
    }
    panic!("no etcd member says it leads");
}

/// Saves `count` times in a row through `store`, from `revision`; returns the last revision.
/// Each save must succeed within `limit`, trying again after an error a fault explains (a
/// request cut, etcd electing a leader, and with `lapse_ok` a moment without leadership); a
/// conflict is never one.
async fn saves(
    store: &EtcdStore,
    mut revision: Revision,
    count: u64,
    limit: Duration,
    lapse_ok: bool,
) -> Revision {
    for version in 0..count {
        let deadline = Instant::now() + limit;
        loop {
            match store.save(&state(100 + version), revision).await {
                Ok(next) => {
                    revision = next;
                    break;
                }
                Err(e @ StoreError::Conflict { .. }) => panic!("save refused: {e}"),
                Err(e @ StoreError::NotLeader) if !lapse_ok => panic!("save refused: {e}"),
                Err(e) => {
                    assert!(Instant::now() < deadline, "no save within {limit:?}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_and_leadership_go_on_when_an_etcd_member_is_killed() {
    let mut etcd = EtcdCluster::start().expect("etcd");
    let prefix = "/t/kill";
    let a = Campaigner::start(etcd.endpoints(), prefix, "cp-a:1").await;
    one_leader(&[&a], Duration::from_secs(10)).await;
    let term = a.leader.term().expect("term");
    let store = store(etcd.endpoints(), prefix)
        .await
        .fenced_by(a.leader.clone());
    let revision = saves(&store, Revision::NONE, 3, Duration::from_secs(5), false).await;

    // A member etcd's raft does not depend on: the control plane must not even blink.
    let raft = raft_leader(&etcd).await;
    let victim = (raft + 1) % 3;
    etcd.kill(victim);
    let watch_until = Instant::now() + TTL * 2;
    let revision = saves(&store, revision, 5, Duration::from_secs(5), false).await;
    while Instant::now() < watch_until {
        assert!(a.leads(), "leadership lost after a member was killed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.leader.term(), Some(term.clone()), "the same term goes on");
    etcd.restart(victim).expect("restart");

    // etcd's own leader: raft elects another and extends the leases, so the key (the term)
    // survives; the control plane may stop believing for a moment while no keepalive is
    // answered, and leads again with the same term.
    let raft = raft_leader(&etcd).await;
    etcd.kill(raft);
    let revision = saves(&store, revision, 5, Duration::from_secs(10), true).await;
    tessera_testkit::wait::eventually("the same term back", Duration::from_secs(10), || {
        a.leader.term() == Some(term.clone())
    })
    .await;
    saves(&store, revision, 1, Duration::from_secs(5), false).await;
    a.resign().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaigner_cut_off_from_etcd_stops_leading_within_the_ttl() {
    let etcd = EtcdCluster::start().expect("etcd");
    let prefix = "/t/cut";
    // `a` talks to member 0 only; `b` to the two others.
    let a = Campaigner::start(vec![etcd.endpoint(0)], prefix, "cp-a:1").await;
    one_leader(&[&a], Duration::from_secs(10)).await;
    let b = Campaigner::start(vec![etcd.endpoint(1), etcd.endpoint(2)], prefix, "cp-b:2").await;
    one_leader(&[&a, &b], Duration::from_secs(10)).await;

    let paused = Instant::now();
    etcd.pause(0).expect("SIGSTOP");
    // `a` has heard nothing since before the pause: its term ends within the TTL of it, by the
    // clock alone; the published leadership follows a moment later.
    let lost = takeover_of_belief(&a, TTL + Duration::from_millis(50)).await;
    eprintln!("cut off: stopped leading {lost:?} after the pause (TTL {TTL:?})");
    assert!(lost <= TTL + Duration::from_millis(50), "{lost:?}");
    tessera_testkit::wait::eventually("the loss published", Duration::from_secs(1), || {
        !a.leader.subscribe().borrow().is_me
    })
    .await;

    // The lease ran out at etcd too, or soon will: `b` takes over, never together with `a`.
    let took = takeover(&b, &[&a], TTL + TAKEOVER_MARGIN + Duration::from_secs(2)).await;
    eprintln!("takeover {:?} after the pause", paused.elapsed());
    let _ = took;

    // Back in touch, `a` follows `b`.
    etcd.resume(0).expect("SIGCONT");
    let resumed = Instant::now();
    while !(a.follows("cp-b:2") && b.follows("cp-b:2")) {
        assert!(
            resumed.elapsed() < Duration::from_secs(15),
            "15 s after SIGCONT a does not follow b: a sees {:?}, b sees {:?}",
            a.leader.leadership(),
            b.leader.leadership()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("a follows b {:?} after SIGCONT", resumed.elapsed());
    a.resign().await;
    b.resign().await;
}

/// Waits until `campaigner` no longer believes it leads; returns how long that took.
async fn takeover_of_belief(campaigner: &Campaigner, limit: Duration) -> Duration {
    let start = Instant::now();
    while campaigner.leads() {
        assert!(
            start.elapsed() <= limit,
            "{} still leads after {limit:?}",
            campaigner.me
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// A control plane on port 0 with its state in `etcd` under `prefix`.
async fn control_plane(
    etcd: &EtcdCluster,
    prefix: &str,
) -> (Server, tessera_testkit::temp::TempDir) {
    control_plane_on(etcd.endpoints(), prefix).await
}

/// A control plane on port 0 with its state at the etcd `endpoints` under `prefix`.
async fn control_plane_on(
    endpoints: Vec<String>,
    prefix: &str,
) -> (Server, tessera_testkit::temp::TempDir) {
    let dir = tessera_testkit::temp_dir("control-plane");
    let mut config = tessera_control_plane::Config::new(dir.path(), Duration::from_secs(15))
        .with_etcd(endpoints, prefix);
    config.election_ttl = TTL;
    (Server::start_with(config).await, dir)
}

fn set(name: &str, value: &str) -> pb::SetSettingRequest {
    pb::SetSettingRequest {
        name: name.into(),
        value: value.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_one_leads_the_other_refuses_writes_and_takes_over() {
    let etcd = EtcdCluster::start().expect("etcd");
    let prefix = "/t/grpc";
    let (first, _first_dir) = control_plane(&etcd, prefix).await;
    let (second, _second_dir) = control_plane(&etcd, prefix).await;
    let mut clients = [first.client().await, second.client().await];

    // Whoever leads takes the write; the other names it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let mut accepted = None;
        for (i, client) in clients.iter_mut().enumerate() {
            match client.set_setting(set("require-full-coverage", "no")).await {
                Ok(_) => accepted = Some(i),
                Err(status) => assert!(
                    matches!(status.code(), Code::FailedPrecondition | Code::Aborted),
                    "{status:?}"
                ),
            }
        }
        if let Some(i) = accepted {
            break i;
        }
        assert!(Instant::now() < deadline, "no control plane took the write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let servers = [&first, &second];
    let follower = 1 - leader;
    let refused = clients[follower]
        .set_setting(set("allow-reads-when-down", "yes"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        refused.message(),
        format!("not the leader; leader is {}", servers[leader].addr)
    );

    // The follower's reads follow the leader's state.
    let reader = clients[follower].clone();
    tessera_testkit::wait::wait_for(TTL * 3, || {
        let mut reader = reader.clone();
        async move {
            reader
                .get_topology(pb::GetTopologyRequest {})
                .await
                .is_ok_and(|t| {
                    t.into_inner()
                        .intent
                        .and_then(|i| i.settings)
                        .is_some_and(|s| !s.require_full_coverage)
                })
        }
    })
    .await
    .expect("the follower reads the leader's setting");

    // The leader stops: the follower takes over with the state the leader saved.
    let (leader_server, follower_client) = if leader == 0 {
        (first, &mut clients[1])
    } else {
        (second, &mut clients[0])
    };
    leader_server.stop().await;
    let deadline = Instant::now() + TTL + TAKEOVER_MARGIN;
    let settings = loop {
        match follower_client
            .set_setting(set("allow-reads-when-down", "yes"))
            .await
        {
            Ok(settings) => break settings.into_inner(),
            Err(status) => assert!(
                Instant::now() < deadline,
                "no takeover within {:?}: {status:?}",
                TTL + TAKEOVER_MARGIN
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!settings.require_full_coverage, "the leader's change kept");
    assert!(settings.allow_reads_when_down);
}

#[tokio::test]
async fn a_control_plane_without_its_etcd_fails_to_start() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let nobody = format!("http://127.0.0.1:{}", tessera_testkit::free_port());
    let config = tessera_control_plane::Config::new(dir.path(), Duration::from_secs(15))
        .with_etcd(vec![nobody], "/t/none");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let started = Instant::now();
    let run = tessera_control_plane::run(config, listener, std::future::pending());
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run gives up within 10 s");
    let err = result.expect_err("no etcd, no state");
    assert!(
        matches!(err, tessera_control_plane::Error::Store(_)),
        "{err}"
    );
    eprintln!("gave up after {:?}: {err}", started.elapsed());
}

/// GetControlPlaneStatus of the control plane at `url`.
async fn status(url: &str) -> Result<pb::ControlPlaneStatus, tonic::Status> {
    let mut client = tessera_proto::control_plane::connect_lazy(url).expect("url");
    tessera_proto::control_plane::call(
        Duration::from_secs(5),
        client.get_control_plane_status(pb::GetControlPlaneStatusRequest {}),
    )
    .await
}

/// Waits until the control plane at `url` reports `role`; returns how long that took.
async fn wait_role(url: &str, role: pb::control_plane_status::Role, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = status(url).await;
        if now.as_ref().is_ok_and(|s| s.role() == role) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{url} is not {role:?} within {limit:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `follower` reports itself a follower of `leader`.
async fn follows(follower: &Server, leader: &Server, limit: Duration) {
    let (url, leader) = (follower.url(), leader.addr.to_string());
    tessera_testkit::wait::wait_for(limit, || {
        let (url, leader) = (url.clone(), leader.clone());
        async move {
            status(&url).await.is_ok_and(|s| {
                s.role() == pb::control_plane_status::Role::Follower && s.leader == leader
            })
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{url} does not follow {leader}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_cut_off_from_etcd_stops_leading_and_another_leads() {
    use pb::control_plane_status::Role;
    let etcd = EtcdCluster::start().expect("etcd");
    let prefix = "/t/cut-grpc";
    // `a` reaches etcd only through member 0, `b` only through the two others.
    let (a, _a_dir) = control_plane_on(vec![etcd.endpoint(0)], prefix).await;
    wait_role(&a.url(), Role::Leader, Duration::from_secs(10)).await;
    let (b, _b_dir) = control_plane_on(vec![etcd.endpoint(1), etcd.endpoint(2)], prefix).await;
    follows(&b, &a, Duration::from_secs(10)).await;
    let follower = status(&b.url()).await.expect("status");
    assert!(follower.store_healthy, "{follower:?}");

    // Member 0 hangs: `a` hears nothing from etcd any more.
    etcd.pause(0).expect("SIGSTOP");
    let lost = wait_role(&a.url(), Role::Follower, TTL + Duration::from_secs(3)).await;
    let took = wait_role(
        &b.url(),
        Role::Leader,
        TTL + TAKEOVER_MARGIN + Duration::from_secs(3),
    )
    .await;
    eprintln!("cut off: a stopped leading after {lost:?}, b led after {took:?}");
    let a_now = status(&a.url()).await.expect("a answers reads");
    assert!(!a_now.store_healthy, "a's store does not answer: {a_now:?}");
    let refused = a
        .client()
        .await
        .set_setting(set("require-full-coverage", "no"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    // Back in touch, `a` follows `b`.
    etcd.resume(0).expect("SIGCONT");
    follows(&a, &b, Duration::from_secs(15)).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_given_a_list_follows_the_leader_past_dead_and_following_entries() {
    use pb::control_plane_status::Role;
    let etcd = EtcdCluster::start().expect("etcd");
    let prefix = "/t/list";
    let (first, _first_dir) = control_plane(&etcd, prefix).await;
    wait_role(&first.url(), Role::Leader, Duration::from_secs(10)).await;
    let (second, _second_dir) = control_plane(&etcd, prefix).await;
    wait_role(&second.url(), Role::Follower, Duration::from_secs(10)).await;
    // A follower serves reads: healthy.
    assert_eq!(
        common::health(&second.url()).await,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let dead = format!("http://127.0.0.1:{}", tessera_testkit::free_port());

    // Dead first, then the follower, then the leader: changes reach the leader.
    let list = format!("{dead},{},{}", second.url(), first.url());
    let mut client = tessera_proto::control_plane::connect_lazy(&list).expect("list");
    let settings = client
        .set_setting(set("require-full-coverage", "no"))
        .await
        .expect("a change through the list")
        .into_inner();
    assert!(!settings.require_full_coverage);
    client
        .register_node(pb::RegisterNodeRequest {
            node_id: common::node_id(1).to_string(),
            announce_host: "127.0.0.1".into(),
            announce_port: common::port(1),
            announce_bus_port: common::port(1) + 10000,
            holds: None,
        })
        .await
        .expect("a registration through the list");
    // A follower's topology stream follows the leader's changes (its etcd watch).
    let mut watch = tessera_proto::control_plane::connect_lazy(&second.url())
        .expect("url")
        .watch_topology(pb::WatchTopologyRequest { after: None })
        .await
        .expect("watch a follower")
        .into_inner();
    client
        .set_setting(set("allow-reads-when-down", "yes"))
        .await
        .expect("a second change");
    // Sooner than the follower's periodic reload (every TTL): the watch brought it.
    let streamed = tokio::time::timeout(Duration::from_millis(1500), async {
        while let Some(topology) = watch.message().await.expect("stream") {
            let settings = topology.intent.and_then(|i| i.settings);
            if settings.is_some_and(|s| s.allow_reads_when_down) {
                return;
            }
        }
        panic!("the follower's stream ended");
    })
    .await;
    assert!(
        streamed.is_ok(),
        "the follower streamed the leader's change"
    );

    // The leader goes: the same client's changes reach the new one within the takeover.
    first.stop().await;
    let deadline = Instant::now() + TTL + TAKEOVER_MARGIN + Duration::from_secs(2);
    loop {
        match client.set_setting(set("node-timeout", "5000")).await {
            Ok(settings) => {
                assert_eq!(settings.into_inner().node_timeout_ms, 5000);
                break;
            }
            Err(status) => assert!(Instant::now() < deadline, "no takeover: {status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.stop().await;
}
