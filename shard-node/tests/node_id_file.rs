//! The node id kept in the data directory across restarts.

use std::path::PathBuf;

use tessera_shard_node::error::NodeIdError;
use tessera_shard_node::node_id;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "tessera-{name}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn made_once_and_kept() {
    let dir = TempDir::new("node-id");
    let first = node_id::load_or_create(&dir.0).expect("create");
    let text = first.as_str();
    assert_eq!(text.len(), 40);
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let second = node_id::load_or_create(&dir.0).expect("load");
    assert_eq!(first, second, "a restarted node keeps its id");
    let stored = std::fs::read_to_string(dir.0.join(node_id::FILE_NAME)).expect("read");
    assert_eq!(stored, format!("{first}\n"));
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != node_id::FILE_NAME)
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file left: {leftovers:?}"
    );
}

#[test]
fn different_directories_get_different_ids() {
    let (a, b) = (TempDir::new("node-id-a"), TempDir::new("node-id-b"));
    assert_ne!(
        node_id::load_or_create(&a.0).expect("a"),
        node_id::load_or_create(&b.0).expect("b")
    );
}

#[test]
fn a_damaged_id_file_is_an_error_not_a_new_identity() {
    let dir = TempDir::new("node-id-bad");
    let path = dir.0.join(node_id::FILE_NAME);
    std::fs::write(&path, "not-an-id\n").expect("write");
    match node_id::load_or_create(&dir.0) {
        Err(NodeIdError::Invalid { path: p }) => assert_eq!(p, path),
        other => panic!("want Invalid, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "not-an-id\n");
}
