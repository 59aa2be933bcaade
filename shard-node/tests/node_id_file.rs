//! The node id kept in the data directory across restarts.

use tessera_testkit::temp::temp_dir;

use tessera_shard_node::error::NodeIdError;
use tessera_shard_node::node_id;

#[test]
fn made_once_and_kept() {
    let dir = temp_dir("node-id");
    let first = node_id::load_or_create(dir.path()).expect("create");
    let text = first.as_str();
    assert_eq!(text.len(), 40);
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let second = node_id::load_or_create(dir.path()).expect("load");
    assert_eq!(first, second, "a restarted node keeps its id");
    let stored = std::fs::read_to_string(dir.path().join(node_id::FILE_NAME)).expect("read");
    assert_eq!(stored, format!("{first}\n"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
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
    let (a, b) = (temp_dir("node-id-a"), temp_dir("node-id-b"));
    assert_ne!(
        node_id::load_or_create(a.path()).expect("a"),
        node_id::load_or_create(b.path()).expect("b")
    );
}

#[test]
fn a_damaged_id_file_is_an_error_not_a_new_identity() {
    let dir = temp_dir("node-id-bad");
    let path = dir.path().join(node_id::FILE_NAME);
    std::fs::write(&path, "not-an-id\n").expect("write");
    match node_id::load_or_create(dir.path()) {
        Err(NodeIdError::Invalid { path: p }) => assert_eq!(p, path),
        other => panic!("want Invalid, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "not-an-id\n");
}
