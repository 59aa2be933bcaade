//! The gRPC boundary: `pb` messages into the domain types (checked with `TryFrom`) and back.

use crate::pb;
use crate::slot::SLOT_COUNT;

use super::{
    ClusterId, Handover, Identity, Intent, NodeId, NodeSpec, NodeStatus, Observation, Role,
    Settings, SlotMigration, Stamp, Topology, TopologyError,
};

impl TryFrom<pb::Topology> for Topology {
    type Error = TopologyError;

    fn try_from(value: pb::Topology) -> Result<Self, Self::Error> {
        let identity = value.identity.map(Identity::try_from).transpose()?;
        let wire = value.intent.unwrap_or_default();
        let nodes = wire
            .nodes
            .into_iter()
            .map(NodeSpec::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.len() > usize::from(u16::MAX) {
            return Err(TopologyError::TooManyNodes(nodes.len()));
        }
        for (i, node) in nodes.iter().enumerate() {
            if nodes[..i].iter().any(|n| n.id == node.id) {
                return Err(TopologyError::DuplicateNode(node.id.to_string()));
            }
        }
        let index_of = |id: &str| {
            nodes
                .iter()
                .position(|n| n.id.as_str() == id)
                .map(|i| i as u16)
                .ok_or_else(|| TopologyError::UnknownNode(id.to_string()))
        };
        let mut slots = vec![None; usize::from(SLOT_COUNT)].into_boxed_slice();
        for range in wire.slots {
            if range.start > range.end || range.end >= u32::from(SLOT_COUNT) {
                return Err(TopologyError::InvalidSlotRange {
                    start: range.start,
                    end: range.end,
                });
            }
            let index = index_of(&range.node_id)?;
            slots[range.start as usize..=range.end as usize].fill(Some(index));
        }
        let mut migrations = Vec::with_capacity(wire.migrations.len());
        for migration in wire.migrations {
            let slot = u16::try_from(migration.slot)
                .ok()
                .filter(|&s| s < SLOT_COUNT)
                .ok_or(TopologyError::InvalidSlot(migration.slot))?;
            let source = index_of(&migration.source_id)?;
            let target = index_of(&migration.target_id)?;
            if slots[usize::from(slot)] != Some(source) {
                return Err(TopologyError::MigrationNotFromOwner {
                    slot,
                    source_id: migration.source_id,
                });
            }
            migrations.push(SlotMigration {
                slot,
                source,
                target,
                by_client: migration.by_client,
            });
        }
        migrations.sort_by_key(|m| m.slot);
        if let Some(pair) = migrations.windows(2).find(|w| w[0].slot == w[1].slot) {
            return Err(TopologyError::DuplicateMigration(pair[0].slot));
        }
        let handover = wire
            .handover
            .map(|h| {
                let handover = Handover {
                    master: NodeId::parse(&h.master_id)?,
                    replica: NodeId::parse(&h.replica_id)?,
                    started_ms: h.started_ms,
                };
                index_of(&h.master_id)?;
                index_of(&h.replica_id)?;
                Ok::<_, TopologyError>(handover)
            })
            .transpose()?;
        let mut observed = Observation {
            nodes: vec![NodeStatus::UNKNOWN; nodes.len()],
        };
        for status in value.observed.unwrap_or_default().nodes {
            let index = usize::from(index_of(&status.node_id)?);
            observed.nodes[index] = NodeStatus::from(&status);
        }
        Ok(Topology {
            identity: identity.unwrap_or_default(),
            version: value.version,
            intent: Intent {
                current_epoch: wire.current_epoch,
                created: wire.created,
                settings: wire.settings.map(Settings::from).unwrap_or_default(),
                nodes,
                slots,
                migrations,
                handover,
            },
            observed,
        })
    }
}

impl From<&Topology> for pb::Topology {
    fn from(value: &Topology) -> Self {
        let intent = &value.intent;
        // Each node's id in hex once: a slot map after a rebalance has thousands of runs, and a
        // rebalance thousands of moves, each naming nodes by id.
        let ids: Vec<String> = intent.nodes.iter().map(|n| n.id.to_string()).collect();
        let id_of = |index: u16| ids.get(usize::from(index)).cloned();
        let slots = value
            .runs()
            .filter_map(|(start, end, owner)| {
                Some(pb::SlotRange {
                    start: u32::from(start),
                    end: u32::from(end),
                    node_id: id_of(owner?)?,
                })
            })
            .collect();
        let migrations = intent
            .migrations
            .iter()
            .filter_map(|m| {
                Some(pb::SlotMigration {
                    slot: u32::from(m.slot),
                    source_id: id_of(m.source)?,
                    target_id: id_of(m.target)?,
                    by_client: m.by_client,
                })
            })
            .collect();
        let observed = value
            .members()
            .map(|(node, status)| pb::NodeStatus {
                node_id: node.id.to_string(),
                ..pb::NodeStatus::from(status)
            })
            .collect();
        pb::Topology {
            identity: Some(pb::ClusterIdentity::from(&value.identity)),
            version: value.version,
            intent: Some(pb::ClusterIntent {
                current_epoch: intent.current_epoch,
                nodes: intent.nodes.iter().map(pb::NodeSpec::from).collect(),
                slots,
                migrations,
                settings: Some(intent.settings.into()),
                created: intent.created,
                handover: intent.handover.as_ref().map(|h| pb::Handover {
                    master_id: h.master.to_string(),
                    replica_id: h.replica.to_string(),
                    started_ms: h.started_ms,
                }),
            }),
            observed: Some(pb::ClusterObservation { nodes: observed }),
        }
    }
}

impl TryFrom<pb::ClusterIdentity> for Identity {
    type Error = TopologyError;

    fn try_from(value: pb::ClusterIdentity) -> Result<Self, Self::Error> {
        let cluster_id = match value.cluster_id.as_str() {
            "" => ClusterId::none(),
            id => ClusterId::parse(id)?,
        };
        Ok(Identity {
            cluster_id,
            generation: value.generation,
        })
    }
}

impl From<&Identity> for pb::ClusterIdentity {
    fn from(value: &Identity) -> Self {
        pb::ClusterIdentity {
            cluster_id: value.cluster_id.to_string(),
            generation: value.generation,
        }
    }
}

impl TryFrom<pb::TopologyStamp> for Stamp {
    type Error = TopologyError;

    fn try_from(value: pb::TopologyStamp) -> Result<Self, Self::Error> {
        Ok(Stamp {
            identity: value
                .identity
                .map(Identity::try_from)
                .transpose()?
                .unwrap_or_default(),
            version: value.version,
        })
    }
}

impl From<&Stamp> for pb::TopologyStamp {
    fn from(value: &Stamp) -> Self {
        pb::TopologyStamp {
            identity: Some(pb::ClusterIdentity::from(&value.identity)),
            version: value.version,
        }
    }
}

impl TryFrom<pb::NodeSpec> for NodeSpec {
    type Error = TopologyError;

    fn try_from(value: pb::NodeSpec) -> Result<Self, Self::Error> {
        let port = |p: u32| u16::try_from(p).map_err(|_| TopologyError::InvalidPort(p));
        let role = if value.role == pb::NodeRole::Replica as i32 {
            Role::Replica
        } else {
            Role::Master
        };
        let master_id = match value.master_id.as_str() {
            "" => None,
            id => Some(NodeId::parse(id)?),
        };
        Ok(NodeSpec {
            id: NodeId::parse(&value.id)?,
            host: value.host,
            port: port(value.port)?,
            bus_port: port(value.bus_port)?,
            role,
            master_id,
            config_epoch: value.config_epoch,
        })
    }
}

impl From<&NodeSpec> for pb::NodeSpec {
    fn from(node: &NodeSpec) -> Self {
        pb::NodeSpec {
            id: node.id.to_string(),
            host: node.host.clone(),
            port: u32::from(node.port),
            bus_port: u32::from(node.bus_port),
            role: match node.role {
                Role::Master => pb::NodeRole::Master as i32,
                Role::Replica => pb::NodeRole::Replica as i32,
            },
            master_id: node
                .master_id
                .as_ref()
                .map(NodeId::to_string)
                .unwrap_or_default(),
            config_epoch: node.config_epoch,
        }
    }
}

impl From<&pb::NodeStatus> for NodeStatus {
    fn from(value: &pb::NodeStatus) -> Self {
        NodeStatus {
            pfail: value.pfail,
            fail: value.fail,
            last_heartbeat_ms: value.last_heartbeat_ms,
            ping_sent_ms: value.ping_sent_ms,
            key_count: value.key_count,
            topology_version: value.topology_version,
            replication_offset: value.replication_offset,
        }
    }
}

/// Without the node's id: the caller sets it.
impl From<&NodeStatus> for pb::NodeStatus {
    fn from(value: &NodeStatus) -> Self {
        pb::NodeStatus {
            node_id: String::new(),
            pfail: value.pfail,
            fail: value.fail,
            last_heartbeat_ms: value.last_heartbeat_ms,
            ping_sent_ms: value.ping_sent_ms,
            key_count: value.key_count,
            topology_version: value.topology_version,
            replication_offset: value.replication_offset,
        }
    }
}

impl From<pb::Settings> for Settings {
    fn from(value: pb::Settings) -> Self {
        Settings {
            require_full_coverage: value.require_full_coverage,
            allow_reads_when_down: value.allow_reads_when_down,
            node_timeout_ms: value.node_timeout_ms,
        }
    }
}

impl From<Settings> for pb::Settings {
    fn from(value: Settings) -> Self {
        pb::Settings {
            require_full_coverage: value.require_full_coverage,
            allow_reads_when_down: value.allow_reads_when_down,
            node_timeout_ms: value.node_timeout_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::tests::three_masters;

    fn full() -> Topology {
        let mut t = three_masters();
        t.identity = Identity {
            cluster_id: ClusterId::from_random_bytes([7; 20]),
            generation: 1_795_000_000_000,
        };
        t.intent.nodes[1].role = Role::Replica;
        t.intent.nodes[1].master_id = Some(t.intent.nodes[0].id.clone());
        t.intent.slots[5461..=10922].fill(Some(2));
        t.observed.nodes[2].pfail = true;
        t.observed.nodes[0].replication_offset = 99;
        t.intent.slots[7] = None;
        t.intent.settings.allow_reads_when_down = true;
        t.intent.migrations = vec![SlotMigration {
            slot: 20,
            source: 0,
            target: 2,
            by_client: false,
        }];
        t.intent.handover = Some(Handover {
            master: t.intent.nodes[0].id.clone(),
            replica: t.intent.nodes[1].id.clone(),
            started_ms: 1_795_000_000_123,
        });
        t
    }

    #[test]
    fn round_trip() {
        let t = full();
        let wire = pb::Topology::from(&t);
        assert_eq!(wire.intent.as_ref().map(|i| i.slots.len()), Some(3));
        assert_eq!(Topology::try_from(wire).unwrap(), t);
        let stamp = t.stamp();
        assert_eq!(
            Stamp::try_from(pb::TopologyStamp::from(&stamp)).unwrap(),
            stamp
        );
        // A node that has heard nothing sends no stamp fields at all.
        assert_eq!(
            Stamp::try_from(pb::TopologyStamp::default()).unwrap(),
            Stamp::default()
        );
    }

    #[test]
    fn observations_are_matched_by_id() {
        let t = full();
        let mut wire = pb::Topology::from(&t);
        let observed = wire.observed.as_mut().unwrap();
        observed.nodes.reverse();
        observed.nodes.pop(); // node 0's status is missing: unknown
        let back = Topology::try_from(wire).unwrap();
        assert!(back.observed.nodes[2].pfail);
        assert_eq!(back.observed.nodes[0], NodeStatus::UNKNOWN);
    }

    #[test]
    fn errors() {
        let good = pb::Topology::from(&full());
        type Edit = fn(&mut pb::Topology);
        type Expected = fn(&TopologyError) -> bool;
        let cases: Vec<(Edit, Expected)> = vec![
            (
                |t| t.intent.as_mut().unwrap().slots[0].end = 16384,
                |e| matches!(e, TopologyError::InvalidSlotRange { .. }),
            ),
            (
                |t| t.intent.as_mut().unwrap().slots[0].node_id = "f".repeat(40),
                |e| matches!(e, TopologyError::UnknownNode(_)),
            ),
            (
                |t| t.intent.as_mut().unwrap().nodes[0].port = 70000,
                |e| e == &TopologyError::InvalidPort(70000),
            ),
            (
                |t| t.intent.as_mut().unwrap().nodes[0].id = "XYZ".into(),
                |e| matches!(e, TopologyError::InvalidNodeId(_)),
            ),
            (
                |t| {
                    let intent = t.intent.as_mut().unwrap();
                    let copy = intent.nodes[0].clone();
                    intent.nodes.push(copy);
                },
                |e| matches!(e, TopologyError::DuplicateNode(_)),
            ),
            (
                |t| t.identity.as_mut().unwrap().cluster_id = "nope".into(),
                |e| matches!(e, TopologyError::InvalidClusterId(_)),
            ),
            (
                |t| t.intent.as_mut().unwrap().migrations[0].slot = 16384,
                |e| e == &TopologyError::InvalidSlot(16384),
            ),
            (
                |t| {
                    let intent = t.intent.as_mut().unwrap();
                    intent.migrations[0].source_id = intent.nodes[2].id.clone();
                },
                |e| matches!(e, TopologyError::MigrationNotFromOwner { slot: 20, .. }),
            ),
            (
                |t| {
                    let intent = t.intent.as_mut().unwrap();
                    let again = intent.migrations[0].clone();
                    intent.migrations.push(again);
                },
                |e| e == &TopologyError::DuplicateMigration(20),
            ),
            (
                |t| t.observed.as_mut().unwrap().nodes[0].node_id = "e".repeat(40),
                |e| matches!(e, TopologyError::UnknownNode(_)),
            ),
            (
                |t| {
                    let handover = t.intent.as_mut().unwrap().handover.as_mut().unwrap();
                    handover.replica_id = "d".repeat(40);
                },
                |e| matches!(e, TopologyError::UnknownNode(_)),
            ),
            (
                |t| {
                    let handover = t.intent.as_mut().unwrap().handover.as_mut().unwrap();
                    handover.master_id = "nope".into();
                },
                |e| matches!(e, TopologyError::InvalidNodeId(_)),
            ),
        ];
        for (i, (edit, expected)) in cases.into_iter().enumerate() {
            let mut bad = good.clone();
            edit(&mut bad);
            let error = Topology::try_from(bad).expect_err(&format!("case {i}"));
            assert!(expected(&error), "case {i}: {error:?}");
        }
        let mut bare = good;
        bare.intent.as_mut().unwrap().settings = None;
        bare.intent.as_mut().unwrap().handover = None;
        bare.identity = None;
        bare.observed = None;
        let t = Topology::try_from(bare).unwrap();
        assert_eq!(t.intent.settings, Settings::default());
        assert_eq!(t.identity, Identity::default());
        assert_eq!(t.observed.nodes.len(), 3);
        assert_eq!(t.intent.handover, None);
    }
}
