//! Matching the `host:port` addresses an operator gives `CreateCluster` to registered nodes: by the
//! exact announced address first, else by resolving both sides to IP addresses (so `localhost:7000`
//! finds a node announced as `127.0.0.1:7000`).

use std::collections::HashSet;
use std::net::IpAddr;

use tessera_proto::topology::NodeId;

use crate::error::Error;

/// A registered node's id and announced address.
#[derive(Debug, Clone)]
pub struct Announced {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
}

/// The node id each address names, in order.
pub async fn match_addresses(
    addresses: &[String],
    registered: &[Announced],
) -> Result<Vec<NodeId>, Error> {
    let mut resolved_nodes: Option<Vec<HashSet<IpAddr>>> = None;
    let mut ids = Vec::with_capacity(addresses.len());
    for address in addresses {
        let (host, port) = split_host_port(address)?;
        if let Some(node) = registered
            .iter()
            .find(|n| n.port == port && n.host.eq_ignore_ascii_case(host))
        {
            ids.push(node.id.clone());
            continue;
        }
        let wanted = resolve(host, port).await;
        if resolved_nodes.is_none() {
            let mut all = Vec::with_capacity(registered.len());
            for node in registered {
                all.push(resolve(&node.host, node.port).await);
            }
            resolved_nodes = Some(all);
        }
        let found = resolved_nodes.as_ref().and_then(|all| {
            registered
                .iter()
                .zip(all)
                .find(|(node, ips)| node.port == port && !ips.is_disjoint(&wanted))
                .map(|(node, _)| node.id.clone())
        });
        match found {
            Some(id) => ids.push(id),
            None => return Err(Error::UnknownAddress(address.clone())),
        }
    }
    Ok(ids)
}

/// `host:port`, `[v6]:port`.
pub fn split_host_port(address: &str) -> Result<(&str, u16), Error> {
    let invalid = || Error::InvalidAddress(address.to_string());
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse::<u16>().map_err(|_| invalid())?;
    if host.is_empty() || port == 0 {
        return Err(invalid());
    }
    Ok((host, port))
}

/// The IPs `host` resolves to; empty when it does not resolve (then it matches nothing).
async fn resolve(host: &str, port: u16) -> HashSet<IpAddr> {
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(e) => {
            tracing::debug!(host, error = %e, "cannot resolve");
            HashSet::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8, host: &str, port: u16) -> Announced {
        Announced {
            id: NodeId::from_random_bytes([n; 20]),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn split() {
        assert_eq!(
            split_host_port("127.0.0.1:7000").ok(),
            Some(("127.0.0.1", 7000))
        );
        assert_eq!(split_host_port("[::1]:7000").ok(), Some(("::1", 7000)));
        assert!(split_host_port("127.0.0.1").is_err());
        assert!(split_host_port("127.0.0.1:x").is_err());
        assert!(split_host_port(":7000").is_err());
        assert!(split_host_port("h:0").is_err());
    }

    #[tokio::test]
    async fn exact_then_resolved_then_unknown() {
        let nodes = [node(1, "127.0.0.1", 7000), node(2, "127.0.0.1", 7001)];
        let ids = match_addresses(&["127.0.0.1:7001".into(), "localhost:7000".into()], &nodes)
            .await
            .expect("match");
        assert_eq!(ids, vec![nodes[1].id.clone(), nodes[0].id.clone()]);
        let err = match_addresses(&["127.0.0.1:7009".into()], &nodes)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no registered node at 127.0.0.1:7009: start it (it registers itself) or check the address"
        );
    }
}
