//! What the failover stories share: a node client logged in with the node secret, INFO
//! replication fields, CLUSTER NODES as data, a master and its replica (or every shard) found from
//! the nodes, and a writer through the proxy that remembers what was acknowledged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use std::time::Duration;

use crate::endpoints::Endpoints;
use crate::resp::RespClient;
use crate::wait;

/// A client of a shard node that has sent `AUTH secret`.
pub fn connect(port: u16, secret: &str) -> RespClient {
    let mut client = RespClient::connect(port).expect("connect");
    assert_eq!(client.call_str(&["AUTH", secret]), "+OK\r\n");
    client
}

/// `field` of INFO replication.
pub fn info_field(client: &mut RespClient, field: &str) -> Option<String> {
    client
        .call_str(&["INFO", "replication"])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
}

/// One master's port, its replica's port and id, and keys of the master's slots and of others.
pub struct Shard {
    /// Indexes in `node_ports`.
    pub master: usize,
    pub replica: usize,
    pub master_id: String,
    pub replica_id: String,
    pub own_keys: Vec<String>,
    pub other_keys: Vec<String>,
}

/// A master with a replica whose link is up, read from the nodes themselves.
pub fn pick_shard(cluster: &Endpoints) -> Shard {
    let secret = &cluster.node_secret;
    let ports = &cluster.node_ports;
    let (replica, master_port) = ports
        .iter()
        .enumerate()
        .find_map(|(i, &port)| {
            let mut node = connect(port, secret);
            (info_field(&mut node, "role").as_deref() == Some("slave")).then(|| {
                let master = info_field(&mut node, "master_port").expect("master_port");
                (i, master.parse::<u16>().expect("a port"))
            })
        })
        .expect("a replica");
    let master = ports
        .iter()
        .position(|&p| p == master_port)
        .expect("its master");
    let mut replica_node = connect(ports[replica], secret);
    let replica_id = my_id(&mut replica_node);
    wait::until("the replica's link is up", Duration::from_secs(20), || {
        (info_field(&mut replica_node, "master_link_status").as_deref() == Some("up")).then_some(())
    });
    let mut master_node = connect(master_port, secret);
    let (mut own_keys, mut other_keys) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let key = format!("key:{i}");
        if master_node.call_str(&["GET", &key]).starts_with("-MOVED") {
            other_keys.push(key);
        } else {
            own_keys.push(key);
        }
    }
    Shard {
        master,
        replica,
        master_id: my_id(&mut master_node),
        replica_id,
        own_keys,
        other_keys,
    }
}

/// The text of a bulk string reply (`$len\r\ntext\r\n`); panics on anything else.
pub fn bulk_text(reply: &str) -> String {
    let (header, rest) = reply.split_once("\r\n").unwrap_or(("", ""));
    let len: usize = header
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a bulk string: {reply:?}"));
    rest[..len].to_string()
}

/// CLUSTER MYID of the node `client` is connected to.
pub fn my_id(client: &mut RespClient) -> String {
    bulk_text(&client.call_str(&["CLUSTER", "MYID"]))
}

/// One line of CLUSTER NODES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    pub id: String,
    /// `host:port@bus` as announced.
    pub address: String,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, ...
    pub flags: Vec<String>,
    /// The master's id for a replica.
    pub master_id: Option<String>,
    /// Slot ranges served (inclusive); migration markers (`[slot->-id]`) left out.
    pub slots: Vec<(u16, u16)>,
}

impl NodeLine {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// CLUSTER NODES of the node `client` is connected to, parsed.
pub fn cluster_nodes(client: &mut RespClient) -> Vec<NodeLine> {
    parse_cluster_nodes(&bulk_text(&client.call_str(&["CLUSTER", "NODES"])))
}

/// CLUSTER NODES text, parsed.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 8, "a CLUSTER NODES line: {line:?}");
            let slots = fields[8..]
                .iter()
                .filter(|f| !f.starts_with('['))
                .map(|f| {
                    let (a, b) = f.split_once('-').unwrap_or((f, f));
                    let parse = |n: &str| n.parse::<u16>().expect("a slot number");
                    (parse(a), parse(b))
                })
                .collect();
            NodeLine {
                id: fields[0].to_string(),
                address: fields[1].to_string(),
                flags: fields[2].split(',').map(str::to_string).collect(),
                master_id: (fields[3] != "-").then(|| fields[3].to_string()),
                slots,
            }
        })
        .collect()
}

/// Every master with a replica whose link is up, found by id (so it works where the nodes
/// announce addresses other than the ports the test reaches them on, as in compose): for stories
/// that fail more than one shard at once. A master with several replicas gets the first one in
/// port order. Keys `key:0..400` are split by slot; `other_keys` are every other shard's.
pub fn shards(cluster: &Endpoints) -> Vec<Shard> {
    let secret = &cluster.node_secret;
    let ports = &cluster.node_ports;
    let ids: Vec<String> = ports
        .iter()
        .map(|&port| my_id(&mut connect(port, secret)))
        .collect();
    let index_of = |id: &str| ids.iter().position(|i| i == id);
    let lines = cluster_nodes(&mut connect(ports[0], secret));
    let keys: Vec<(String, u16)> = (0..400)
        .map(|i| {
            let key = format!("key:{i}");
            let slot = tessera_proto::slot::key_hash_slot(key.as_bytes());
            (key, slot)
        })
        .collect();
    let mut shards = Vec::new();
    for master_line in lines
        .iter()
        .filter(|l| l.has_flag("master") && !l.slots.is_empty())
    {
        let master = index_of(&master_line.id)
            .unwrap_or_else(|| panic!("master {} is none of the ports {ports:?}", master_line.id));
        let Some(replica) = (0..ports.len()).find(|&i| {
            lines
                .iter()
                .any(|l| l.id == ids[i] && l.master_id.as_deref() == Some(master_line.id.as_str()))
        }) else {
            continue;
        };
        let mut replica_node = connect(ports[replica], secret);
        wait::until("the replica's link is up", Duration::from_secs(20), || {
            (info_field(&mut replica_node, "master_link_status").as_deref() == Some("up"))
                .then_some(())
        });
        let owns = |slot: u16| {
            master_line
                .slots
                .iter()
                .any(|&(a, b)| a <= slot && slot <= b)
        };
        let (own, other): (Vec<_>, Vec<_>) = keys.iter().partition(|(_, slot)| owns(*slot));
        shards.push(Shard {
            master,
            replica,
            master_id: master_line.id.clone(),
            replica_id: ids[replica].clone(),
            own_keys: own.into_iter().map(|(k, _)| k.clone()).collect(),
            other_keys: other.into_iter().map(|(k, _)| k.clone()).collect(),
        });
    }
    shards.sort_by_key(|s| s.master);
    shards
}

/// Writes `keys` in turn through the proxy until stopped: counts errors, remembers the last value
/// acknowledged for each key.
pub struct Writer {
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    handle: thread::JoinHandle<Vec<(String, u64)>>,
}

impl Writer {
    pub fn start(proxy_port: u16, keys: Vec<String>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let (stop2, errors2) = (stop.clone(), errors.clone());
        let handle = thread::spawn(move || {
            let mut proxy = RespClient::connect(proxy_port).expect("proxy");
            let mut acked: Vec<(String, u64)> = keys.iter().map(|k| (k.clone(), 0)).collect();
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                n += 1;
                let slot = (n as usize) % acked.len();
                let reply = proxy.call_str(&["SET", &acked[slot].0, &n.to_string()]);
                if reply == "+OK\r\n" {
                    acked[slot].1 = n;
                } else {
                    errors2.fetch_add(1, Ordering::Relaxed);
                    eprintln!("writer error: {}", reply.trim_end());
                }
            }
            acked
        });
        Writer {
            stop,
            errors,
            handle,
        }
    }

    /// Stops; the errors seen and each key's last acknowledged value (0: none).
    pub fn finish(self) -> (u64, Vec<(String, u64)>) {
        self.stop.store(true, Ordering::Relaxed);
        let acked = self.handle.join().expect("writer thread");
        (self.errors.load(Ordering::Relaxed), acked)
    }
}

/// Every acknowledged value reads back through the proxy.
pub fn assert_acked_present(proxy_port: u16, acked: &[(String, u64)]) {
    let mut proxy = RespClient::connect(proxy_port).expect("proxy");
    for (key, value) in acked.iter().filter(|(_, v)| *v > 0) {
        let want = value.to_string();
        assert_eq!(
            proxy.call_str(&["GET", key]),
            format!("${}\r\n{want}\r\n", want.len()),
            "acknowledged {key}={value} lost"
        );
    }
}
