//! The real Redis programs as users run them: `redis-cli` and `redis-benchmark`. (The
//! redis-server oracle is `tessera_testkit::RedisServer`.)

use std::process::{Command, Output, Stdio};

/// Runs `redis-cli` with `args` and returns its stdout; panics when it cannot be started.
pub fn cli(args: &[&str]) -> String {
    let output = run("redis-cli", args);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a program to completion, capturing its output.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (scripts/ensure-tools.sh installs it): {e}")
        })
}
