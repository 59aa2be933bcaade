//! Real Redis tools against a node: redis-benchmark (plain, pipelined and in cluster mode) and
//! redis-cli must finish without an error or a warning. Skipped, with a message, where the tools
//! are not installed.

mod data_support;

use std::process::{Command, Output};

use anyhow::Context;
use data_support::TestNode;

fn tool_available(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a blocking tool off the async runtime, so the in-process node keeps serving.
async fn run_tool(program: &'static str, args: Vec<String>) -> anyhow::Result<Output> {
    tokio::task::spawn_blocking(move || Command::new(program).args(&args).output())
        .await?
        .with_context(|| format!("running {program}"))
}

fn check(output: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed: {stdout}\n{stderr}");
    for bad in ["ERR", "WARN", "Error", "error"] {
        assert!(
            !stdout.contains(bad) && !stderr.contains(bad),
            "{what} printed {bad}: {stdout}\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_and_redis_cli_run_cleanly() -> anyhow::Result<()> {
    if !tool_available("redis-benchmark") || !tool_available("redis-cli") {
        eprintln!(
            "SKIPPED: redis-benchmark / redis-cli not found on PATH (Debian package redis-tools)"
        );
        return Ok(());
    }
    let node = TestNode::start().await?;
    let port = node.addr.port().to_string();
    let base = |extra: &[&str]| {
        let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", &port]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    let plain = run_tool(
        "redis-benchmark",
        base(&[
            "-t", "set,get", "-n", "10000", "-c", "10", "-d", "100", "-r", "100000", "-q",
        ]),
    )
    .await?;
    check(&plain, "redis-benchmark");
    let piped = run_tool(
        "redis-benchmark",
        base(&[
            "-t",
            "set,get,incr,mset",
            "-n",
            "10000",
            "-c",
            "4",
            "-P",
            "16",
            "-q",
        ]),
    )
    .await?;
    check(&piped, "redis-benchmark -P 16");
    assert!(
        node.state.keyspace.len() > 1000,
        "benchmark keys: {}",
        node.state.keyspace.len()
    );

    let cli = run_tool("redis-cli", base(&["-c", "SET", "cli-key", "v"])).await?;
    check(&cli, "redis-cli -c SET");
    let get = run_tool("redis-cli", base(&["-c", "GET", "cli-key"])).await?;
    assert_eq!(String::from_utf8_lossy(&get.stdout), "v\n");
    let dbsize = run_tool("redis-cli", base(&["DBSIZE"])).await?;
    assert_eq!(
        String::from_utf8_lossy(&dbsize.stdout).trim(),
        node.state.keyspace.len().to_string()
    );
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_cluster_mode_and_redis_cli_redirects() -> anyhow::Result<()> {
    if !tool_available("redis-benchmark") || !tool_available("redis-cli") {
        eprintln!(
            "SKIPPED: redis-benchmark / redis-cli not found on PATH (Debian package redis-tools)"
        );
        return Ok(());
    }
    let nodes = TestNode::start_cluster().await?;
    let port = nodes[0].addr.port().to_string();
    let args = |extra: &[&str]| {
        let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", &port]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let cluster = run_tool(
        "redis-benchmark",
        args(&[
            "--cluster",
            "-t",
            "set",
            "-n",
            "10000",
            "-c",
            "10",
            "-d",
            "100",
            "-r",
            "100000",
            "-q",
        ]),
    )
    .await?;
    check(&cluster, "redis-benchmark --cluster");
    for node in &nodes {
        assert!(node.state.keyspace.len() > 100, "each master got keys");
    }
    // `foo` hashes to 12182, served by the third node: redis-cli -c follows the MOVED.
    let set = run_tool("redis-cli", args(&["-c", "SET", "foo", "bar"])).await?;
    check(&set, "redis-cli -c SET foo");
    let get = run_tool("redis-cli", args(&["-c", "GET", "foo"])).await?;
    assert_eq!(String::from_utf8_lossy(&get.stdout), "bar\n");
    assert!(nodes[2]
        .state
        .keyspace
        .lock_key(b"foo")
        .get(b"foo")
        .is_some());
    for node in nodes {
        node.stop().await?;
    }
    Ok(())
}
