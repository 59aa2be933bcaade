//! What the failover stories share: a node client logged in with the node secret, INFO
//! replication fields, a master and its replica found from the nodes, and a writer through the
//! proxy that remembers what was acknowledged.

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
    let replica_id = replica_node.call_str(&["CLUSTER", "MYID"]);
    let replica_id = replica_id.lines().nth(1).expect("an id").to_string();
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
        replica_id,
        own_keys,
        other_keys,
    }
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
