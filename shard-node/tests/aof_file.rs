//! The append-only file against a real disk: round trip, a torn tail cut off, a damaged middle
//! refused, flush at shutdown, prompt background writes, and fsync waits.

use std::path::Path;
use std::time::{Duration, Instant};
use tessera_testkit::temp::temp_dir;

use bytes::{Bytes, BytesMut};
use tessera_shard_node::aof::{self, Aof, FsyncPolicy};
use tessera_shard_node::error::AofError;

fn args(items: &[&[u8]]) -> Vec<Bytes> {
    items.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}

fn sample() -> Vec<Vec<Bytes>> {
    vec![
        args(&[b"SET", b"k1", b"v1"]),
        args(&[b"SET", b"bin\r\n\0key", b"", b"PXAT", b"1893456000000"]),
        args(&[b"DEL", b"k1", b"k2", b"k3"]),
        args(&[b"INCRBY", b"counter", b"-5"]),
        vec![
            Bytes::from_static(b"APPEND"),
            Bytes::from_static(b"big"),
            Bytes::from(vec![b'x'; 100_000]),
        ],
    ]
}

fn load_all(path: &Path) -> Result<(Vec<Vec<Bytes>>, aof::LoadSummary), AofError> {
    let mut records = Vec::new();
    let summary = aof::load(path, |record| {
        records.push(record);
        Ok::<(), String>(())
    })?;
    Ok((records, summary))
}

fn encoded(records: &[Vec<Bytes>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for record in records {
        aof::encode_record(record, &mut out);
    }
    out.to_vec()
}

#[tokio::test]
async fn round_trip_through_the_writer() {
    let dir = temp_dir("aof-round-trip");
    let aof = Aof::open(&dir.path().join(aof::FILE_NAME), FsyncPolicy::Everysec).expect("open");
    assert_eq!(aof.offset(), 0);
    for record in sample() {
        aof.append(&record);
    }
    let expected = encoded(&sample());
    assert_eq!(aof.offset(), expected.len() as u64);
    aof.flush_and_sync().await.expect("flush");
    assert_eq!(
        std::fs::read(dir.path().join(aof::FILE_NAME)).expect("read"),
        expected
    );

    let (records, summary) = load_all(&dir.path().join(aof::FILE_NAME)).expect("load");
    assert_eq!(records, sample());
    assert_eq!(summary.records, 5);
    assert_eq!(summary.end_offset, expected.len() as u64);
    assert_eq!(summary.truncated_bytes, 0);

    // Reopened, the log continues where it ended.
    let aof = Aof::open(&dir.path().join(aof::FILE_NAME), FsyncPolicy::Everysec).expect("reopen");
    assert_eq!(aof.offset(), expected.len() as u64);
    let end = aof.append_with_offset(&args(&[b"SET", b"k9", b"v9"]));
    aof.flush_and_sync().await.expect("flush");
    let (records, summary) = load_all(&dir.path().join(aof::FILE_NAME)).expect("load");
    assert_eq!(records.len(), 6);
    assert_eq!(summary.end_offset, end);
}

#[test]
fn a_missing_file_is_an_empty_log() {
    let dir = temp_dir("aof-missing");
    let (records, summary) = load_all(&dir.path().join(aof::FILE_NAME)).expect("load");
    assert!(records.is_empty());
    assert_eq!(summary, aof::LoadSummary::default());
}

#[test]
fn a_torn_last_record_is_cut_off_at_every_cut_point() {
    let dir = temp_dir("aof-torn");
    let whole = encoded(&sample()[..2]);
    let last = encoded(&[args(&[b"SET", b"key", b"value"])]);
    for cut in 1..last.len() {
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&last[..cut]);
        std::fs::write(dir.path().join(aof::FILE_NAME), &bytes).expect("write");
        let (records, summary) =
            load_all(&dir.path().join(aof::FILE_NAME)).expect("a torn tail loads");
        assert_eq!(records, sample()[..2].to_vec(), "cut at {cut}");
        assert_eq!(summary.end_offset, whole.len() as u64);
        assert_eq!(summary.truncated_bytes, cut as u64);
        assert_eq!(
            std::fs::read(dir.path().join(aof::FILE_NAME)).expect("read"),
            whole,
            "the file is truncated to the last whole record (cut at {cut})"
        );
    }
}

#[test]
fn a_torn_huge_argument_is_not_allocated() {
    let dir = temp_dir("aof-torn-huge");
    let mut bytes = encoded(&sample()[..1]);
    bytes.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$500000000\r\nabc");
    std::fs::write(dir.path().join(aof::FILE_NAME), &bytes).expect("write");
    let (records, summary) = load_all(&dir.path().join(aof::FILE_NAME)).expect("load");
    assert_eq!(records.len(), 1);
    assert!(summary.truncated_bytes > 0);
}

#[test]
fn a_damaged_record_before_the_end_stops_loading() {
    let dir = temp_dir("aof-corrupt");
    let head = encoded(&sample()[..2]);
    let tail = encoded(&sample()[2..]);
    let damages: [&[u8]; 5] = [
        b"garbage\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nkXY",
        b"*x\r\n",
        b"*1\r\n+PING\r\n",
        b"*0\r\n",
    ];
    for damage in damages {
        let mut bytes = head.clone();
        bytes.extend_from_slice(damage);
        bytes.extend_from_slice(&tail);
        std::fs::write(dir.path().join(aof::FILE_NAME), &bytes).expect("write");
        match load_all(&dir.path().join(aof::FILE_NAME)) {
            Err(AofError::Corrupt { offset, .. }) => {
                assert_eq!(offset, head.len() as u64, "damage {damage:?}")
            }
            other => panic!("damage {damage:?}: want Corrupt, got {other:?}"),
        }
        assert_eq!(
            std::fs::read(dir.path().join(aof::FILE_NAME)).expect("read"),
            bytes,
            "a damaged file is left as it is"
        );
    }
}

#[test]
fn the_error_names_the_file_and_the_offset() {
    let dir = temp_dir("aof-corrupt-message");
    let mut bytes = encoded(&sample()[..1]);
    let offset = bytes.len();
    bytes.extend_from_slice(b"oops\r\n");
    bytes.extend_from_slice(&encoded(&sample()[..1]));
    std::fs::write(dir.path().join(aof::FILE_NAME), &bytes).expect("write");
    let message = load_all(&dir.path().join(aof::FILE_NAME))
        .expect_err("corrupt")
        .to_string();
    assert!(
        message.contains(&dir.path().join(aof::FILE_NAME).display().to_string()),
        "{message}"
    );
    assert!(message.contains(&format!("at byte {offset}")), "{message}");
}

#[test]
fn annotations_between_records_are_skipped() {
    let dir = temp_dir("aof-annotations");
    let mut bytes = b"#TS:1700000000\r\n".to_vec();
    bytes.extend_from_slice(&encoded(&sample()[..2]));
    std::fs::write(dir.path().join(aof::FILE_NAME), &bytes).expect("write");
    let (records, _) = load_all(&dir.path().join(aof::FILE_NAME)).expect("load");
    assert_eq!(records, sample()[..2].to_vec());
}

#[test]
fn a_replay_error_stops_loading_at_its_record() {
    let dir = temp_dir("aof-replay-error");
    std::fs::write(dir.path().join(aof::FILE_NAME), encoded(&sample())).expect("write");
    let first = encoded(&sample()[..1]).len() as u64;
    let mut seen = 0;
    let result = aof::load(&dir.path().join(aof::FILE_NAME), |_| {
        seen += 1;
        if seen == 2 {
            Err("ERR unknown command 'SET'")
        } else {
            Ok(())
        }
    });
    match result {
        Err(AofError::Replay { offset, reason, .. }) => {
            assert_eq!(offset, first);
            assert!(reason.contains("unknown command"));
        }
        other => panic!("want Replay, got {other:?}"),
    }
    assert_eq!(seen, 2);
}

/// Appends reach the file without any flush call, within a bounded time.
#[tokio::test]
async fn the_writer_writes_promptly() {
    let dir = temp_dir("aof-prompt");
    let aof = Aof::open(&dir.path().join(aof::FILE_NAME), FsyncPolicy::No).expect("open");
    let end = aof.append_with_offset(&args(&[b"SET", b"a", b"1"]));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let len = std::fs::metadata(dir.path().join(aof::FILE_NAME))
            .expect("stat")
            .len();
        if len == end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not written within 2 s ({len} of {end} bytes)"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(aof.progress().written, end);
    aof.flush_and_sync().await.expect("flush");
}

#[tokio::test]
async fn flush_and_sync_writes_everything_at_shutdown() {
    let dir = temp_dir("aof-flush");
    let aof = Aof::open(&dir.path().join(aof::FILE_NAME), FsyncPolicy::No).expect("open");
    let mut expected = Vec::new();
    for i in 0..20_000u32 {
        let record = args(&[b"SET", format!("key:{i}").as_bytes(), b"value"]);
        aof.append(&record);
        expected.push(record);
    }
    let end = aof.offset();
    aof.flush_and_sync().await.expect("flush");
    let progress = aof.progress();
    assert!(progress.closed);
    assert_eq!(progress.synced, end);
    let (records, summary) = load_all(&dir.path().join(aof::FILE_NAME)).expect("load");
    assert_eq!(records, expected);
    assert_eq!(summary.end_offset, end);
    // A second call is harmless.
    aof.flush_and_sync().await.expect("flush again");
}

#[tokio::test]
async fn sync_now_and_wait_synced_report_durable_offsets() {
    let dir = temp_dir("aof-sync");
    let aof = Aof::open(&dir.path().join(aof::FILE_NAME), FsyncPolicy::No).expect("open");
    let end = aof.append_with_offset(&args(&[b"SET", b"a", b"1"]));
    let synced = tokio::time::timeout(Duration::from_secs(5), aof.sync_now())
        .await
        .expect("sync_now in time")
        .expect("sync_now");
    assert_eq!(synced, end);
    assert!(aof.progress().synced >= end);

    let always = temp_dir("aof-always");
    let aof = Aof::open(&always.path().join(aof::FILE_NAME), FsyncPolicy::Always).expect("open");
    for i in 0..100u32 {
        let end = aof.append_with_offset(&args(&[b"INCR", format!("c{i}").as_bytes()]));
        tokio::time::timeout(Duration::from_secs(5), aof.wait_synced(end))
            .await
            .expect("durable in time")
            .expect("durable");
    }
    aof.flush_and_sync().await.expect("flush");
}

/// Redis's own checker accepts the file we write (skipped where redis-check-aof is missing).
#[tokio::test]
async fn redis_check_aof_accepts_our_file() {
    let checker = Path::new("/usr/bin/redis-check-aof");
    if !checker.exists() {
        return;
    }
    let dir = temp_dir("aof-redis-check");
    let aof = Aof::open(&dir.path().join(aof::FILE_NAME), FsyncPolicy::Everysec).expect("open");
    for record in sample() {
        aof.append(&record);
    }
    aof.flush_and_sync().await.expect("flush");
    let output = std::process::Command::new(checker)
        .arg(dir.path().join(aof::FILE_NAME))
        .output()
        .expect("run redis-check-aof");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "redis-check-aof failed: {text}");
    assert!(text.contains("is valid"), "{text}");
}
