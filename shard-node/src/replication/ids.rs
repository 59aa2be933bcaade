//! The replication id and offset, and their file in the data directory (`replication`, beside
//! the node id), so a restarted node keeps its history.
//!
//! The rule that keeps them consistent with the data: the offset names a point of the write log,
//! and after a restart the data is whatever the AOF replays to. So the file records, with the id
//! and offset, the AOF's size at the instant they were taken (`aof-size`), and that is known
//! exactly only at a clean shutdown (writes stopped, AOF flushed). At start:
//! - the file's `aof-size` equals the size of the AOF just loaded: the data is exactly the state at
//!   that offset, so the node keeps its replid and offset (a replica continues with PSYNC, a master
//!   lets its replicas continue);
//! - otherwise (a crash, the AOF off so the data is gone, or the file changed since): the node
//!   keeps the offset, so offsets stay monotonic for whoever compares them, but takes a new
//!   replid, so nobody continues a history the data may not match: replicas resync fully.
//!
//! The file is also written every second while the node runs (with `aof-size -`), which keeps the
//! offset close after a crash.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::ReplicationError;

/// File name inside the data directory.
pub const FILE_NAME: &str = "replication";

/// A replication id: 40 hex characters, as Redis's replid.
pub type ReplId = String;

/// Redis's replid2 when there is none.
pub const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// The history this node's data belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplIds {
    pub replid: ReplId,
    /// The replid of the history this one continues (after a promotion or a switch of master),
    /// valid up to `second_offset` (Redis's replid2 and second_replid_offset; -1: none).
    pub replid2: ReplId,
    pub second_offset: i64,
    /// False while a replica loads a snapshot (or after a failed load): its data belongs to no
    /// history, and its next PSYNC asks for a full one (`? -1`).
    pub valid: bool,
}

impl ReplIds {
    pub fn fresh() -> ReplIds {
        ReplIds {
            replid: random_replid(),
            replid2: NO_REPLID.to_string(),
            second_offset: -1,
            valid: true,
        }
    }

    /// Redis's shiftReplicationId: a new history that continues this one after `offset`.
    pub fn shift(&mut self, offset: u64) {
        self.replid2 = std::mem::replace(&mut self.replid, random_replid());
        self.second_offset = offset as i64 + 1;
    }

    /// Whether a replica asking for `replid` from position `from` asks for our history (Redis's
    /// first test in masterTryPartialResynchronization).
    pub fn serves(&self, replid: &str, from: u64) -> bool {
        self.valid
            && (replid == self.replid
                || (replid == self.replid2 && from as i64 <= self.second_offset))
    }
}

pub fn random_replid() -> ReplId {
    let bytes: [u8; 20] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_replid(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub replid: ReplId,
    pub offset: u64,
    /// The AOF's size when they were taken, when known (clean shutdown).
    pub aof_size: Option<u64>,
}

impl Saved {
    fn render(&self) -> String {
        let aof = self
            .aof_size
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        format!(
            "replid {}\noffset {}\naof-size {aof}\n",
            self.replid, self.offset
        )
    }

    fn parse(text: &str) -> Option<Saved> {
        let mut replid = None;
        let mut offset = None;
        let mut aof_size = None;
        for line in text.lines() {
            match line.split_once(' ')? {
                ("replid", v) if is_replid(v) => replid = Some(v.to_ascii_lowercase()),
                ("offset", v) => offset = Some(v.parse().ok()?),
                ("aof-size", "-") => {}
                ("aof-size", v) => aof_size = Some(v.parse().ok()?),
                _ => return None,
            }
        }
        Some(Saved {
            replid: replid?,
            offset: offset?,
            aof_size,
        })
    }

    /// The ids and offset a node starts with, by the rule above; `aof_size` is the size of the
    /// AOF just loaded (`None`: the AOF is off).
    pub fn resume(saved: Option<Saved>, aof_size: Option<u64>) -> (ReplIds, u64) {
        match saved {
            Some(saved) if saved.aof_size.is_some() && saved.aof_size == aof_size => (
                ReplIds {
                    replid: saved.replid,
                    ..ReplIds::fresh()
                },
                saved.offset,
            ),
            Some(saved) => (ReplIds::fresh(), saved.offset),
            None => (ReplIds::fresh(), 0),
        }
    }
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads the file; `None` when missing. A damaged file is an error: better stop than silently
/// take a new history (delete the file to start one).
pub fn load(data_dir: &Path) -> Result<Option<Saved>, ReplicationError> {
    let path = path(data_dir);
    match fs::read_to_string(&path) {
        Ok(text) => Saved::parse(&text)
            .map(Some)
            .ok_or(ReplicationError::InvalidStateFile { path }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReplicationError::StateFile {
            action: "read",
            path,
            source,
        }),
    }
}

/// Writes the file atomically (see `node_id::write_atomically`).
pub fn save(data_dir: &Path, saved: &Saved) -> Result<(), ReplicationError> {
    let path = path(data_dir);
    crate::node_id::write_atomically(&path, saved.render().as_bytes()).map_err(
        |(action, source)| ReplicationError::StateFile {
            action,
            path: path.clone(),
            source,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_the_resume_rule() {
        let saved = Saved {
            replid: random_replid(),
            offset: 1234,
            aof_size: Some(99),
        };
        assert_eq!(Saved::parse(&saved.render()), Some(saved.clone()));
        let (ids, offset) = Saved::resume(Some(saved.clone()), Some(99));
        assert_eq!((ids.replid.as_str(), offset), (saved.replid.as_str(), 1234));
        // The AOF grew after the save (a crash), or is off: a new history from the same offset.
        for aof in [Some(100), None] {
            let (ids, offset) = Saved::resume(Some(saved.clone()), aof);
            assert_ne!(ids.replid, saved.replid);
            assert_eq!(offset, 1234);
        }
        let periodic = Saved {
            aof_size: None,
            ..saved.clone()
        };
        assert_eq!(Saved::parse(&periodic.render()), Some(periodic.clone()));
        assert_ne!(Saved::resume(Some(periodic), None).0.replid, saved.replid);
        assert_eq!(Saved::parse("replid xyz\noffset 1\naof-size -\n"), None);
    }

    #[test]
    fn a_shifted_history_serves_the_old_one_up_to_the_switch() {
        let mut ids = ReplIds::fresh();
        let old = ids.replid.clone();
        ids.shift(100);
        assert_eq!(ids.replid2, old);
        assert_eq!(ids.second_offset, 101);
        assert!(ids.serves(&old, 101));
        assert!(!ids.serves(&old, 102));
        assert!(ids.serves(&ids.replid.clone(), 500));
        assert!(!ids.serves("?", 1));
    }
}
