//! Tessera's control plane: a tonic gRPC server that owns the truth of the cluster (node registry,
//! slot -> master map, epochs, PFAIL/FAIL state, settings), persisted in its data directory or
//! in etcd, and publishes every new topology version to watchers. With etcd, several control
//! planes run and one, elected through an etcd lease (`leader`), makes the changes. `clusterctl`
//! is its operator CLI.
//!
//! Deciding is kept apart from doing: `placement`, `moves`, `failure`, `failover`, `settings` and `state` are pure
//! transitions with the clock passed in; `controller` locks, saves and publishes; `service` speaks
//! gRPC. `run` serves on a given listener so tests start real servers on port 0 in-process.

pub mod clusterctl;
pub mod config;
pub mod controller;
pub mod error;
pub mod failover;
pub mod failure;
pub mod leader;
pub mod moves;
pub mod placement;
pub mod resolve;
pub mod service;
pub mod settings;
pub mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tessera_proto::pb;
use tessera_proto::topology::Settings;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, LogFormat, StoreKind};
pub use error::Error;

use controller::Controller;
use leader::{ElectionOptions, Leader};
use service::ControlPlaneService;
use store::{EtcdStore, FileStore, StateStore};

/// How often the failure detector runs.
const DETECTOR_TICK: Duration = Duration::from_millis(100);

/// Serves the control plane on `listener` until `shutdown` completes, with state where
/// `config.store` says: the data directory, or etcd (then it also campaigns for leadership, and
/// gives it up at shutdown). Open WatchTopology streams end at shutdown; the detector task stops
/// with it.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let stop = CancellationToken::new();
    match config.store {
        StoreKind::File => {
            let store = Arc::new(FileStore::new(&config.data_dir));
            serve(config, store, None, listener, shutdown, stop).await
        }
        StoreKind::Etcd => {
            let options = config.etcd_options();
            let client = options.connect().await.map_err(Error::Store)?;
            let me = advertised(&config, &listener);
            let election = ElectionOptions {
                key: options.leader_key(),
                me,
                ttl: config.election_ttl,
            };
            let (leader, campaign) = Leader::campaign(client.clone(), election, stop.child_token());
            let changed = Arc::new(tokio::sync::Notify::new());
            let state_watch = tokio::spawn(store::etcd::watch_key(
                client.clone(),
                options.state_key(),
                changed.clone(),
                stop.child_token(),
            ));
            let store = Arc::new(EtcdStore::new(client, &options).fenced_by(leader.clone()));
            let served = serve(
                config,
                store,
                Some((leader, changed)),
                listener,
                shutdown,
                stop.clone(),
            )
            .await;
            // `serve` may have failed before it cancelled (etcd unreachable at start).
            stop.cancel();
            let _ = campaign.await;
            let _ = state_watch.await;
            served
        }
    }
}

/// The address this control plane is named by: --advertise, else the address bound.
fn advertised(config: &Config, listener: &TcpListener) -> String {
    match (&config.advertise, listener.local_addr()) {
        (Some(address), _) => address.clone(),
        (None, Ok(address)) => address.to_string(),
        (None, Err(_)) => config.listen.to_string(),
    }
}

/// `run` with any state store and no election: this control plane is the only writer.
pub async fn run_with_store(
    config: Config,
    store: Arc<dyn StateStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve(
        config,
        store,
        None,
        listener,
        shutdown,
        CancellationToken::new(),
    )
    .await
}

/// Serves until `shutdown`, then cancels `stop` (which ends the campaign, if any). With an
/// election, `leader` comes with the signal that the stored state changed (a follower reloads).
async fn serve(
    config: Config,
    store: Arc<dyn StateStore>,
    leader: Option<(Leader, Arc<tokio::sync::Notify>)>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    stop: CancellationToken,
) -> Result<(), Error> {
    let defaults = Settings {
        node_timeout_ms: u64::try_from(config.node_timeout.as_millis()).unwrap_or(u64::MAX),
        ..Settings::default()
    };
    let (leader, follower) = match leader {
        Some((leader, changed)) => {
            let follower = (leader.subscribe(), changed, config.election_ttl);
            (Some(leader), Some(follower))
        }
        None => (None, None),
    };
    let controller = Arc::new(Controller::open(store, defaults, leader).await?);

    let detector = tokio::spawn(detect_failures(controller.clone(), stop.clone()));
    let follow = follower.map(|(leadership, changed, every)| {
        tokio::spawn(follow_leader(
            controller.clone(),
            leadership,
            changed,
            every,
            stop.clone(),
        ))
    });

    // SERVING on a follower too: it answers reads and the topology watch, and its refusals of
    // changes name the leader.
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::control_plane_server::ControlPlaneServer<ControlPlaneService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let service = ControlPlaneService::new(
        controller,
        stop.clone(),
        advertised(&config, &listener),
        config.store,
    );
    let address = listener.local_addr().ok();
    match config.store {
        StoreKind::File => {
            tracing::info!(?address, data_dir = %config.data_dir.display(), "control plane serving")
        }
        StoreKind::Etcd => tracing::info!(
            ?address,
            endpoints = ?config.etcd_endpoints,
            prefix = %config.etcd_prefix,
            "control plane serving, state in etcd"
        ),
    }

    let signal = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            stop.cancel();
        }
    };
    let served = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(pb::control_plane_server::ControlPlaneServer::new(service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            signal,
        )
        .await;
    stop.cancel();
    let _ = detector.await;
    if let Some(follow) = follow {
        let _ = follow.await;
    }
    served?;
    tracing::info!("control plane stopped");
    Ok(())
}

/// The failure detector's clock: one round every `DETECTOR_TICK` until `stop`.
async fn detect_failures(controller: Arc<Controller>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(DETECTOR_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                if let Err(e) = controller.tick().await {
                    tracing::error!(error = %e, "failure detector round not applied");
                }
            }
        }
    }
}

/// A follower's reads follow the leader: it reloads the stored state whenever the stored state
/// changes (`changed`, from an etcd watch), whenever who leads changes, and every `every` (the
/// election TTL) in case the watch missed something. So nodes and proxies may watch a follower's
/// topology stream. A leader's own state is the newest, and is left alone.
async fn follow_leader(
    controller: Arc<Controller>,
    mut leadership: tokio::sync::watch::Receiver<leader::Leadership>,
    changed: Arc<tokio::sync::Notify>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
            _ = changed.notified() => {}
            changed = leadership.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        if let Err(e) = controller.refresh().await {
            tracing::warn!(error = %e, "cannot reload the stored state");
        }
    }
}
