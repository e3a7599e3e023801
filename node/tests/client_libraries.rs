//! Real client libraries against autocache: redis-py speaking RESP3 (installed by
//! scripts/setup.sh), and redis-cli and redis-benchmark as users run them.

mod common;

use std::process::Command;

use common::{redis_cli, run_python_client, start_autocache};

#[test]
fn redis_py_speaks_resp3() {
    let server = start_autocache();
    run_python_client("redis_py_resp3.py", server.port, "RESP3: ok");
}

#[test]
fn redis_cli_session() {
    let server = start_autocache();
    let run = |args: &[&str]| redis_cli(server.port, args);
    assert_eq!(run(&["SET", "greeting", "hello"]), "OK");
    assert_eq!(run(&["GET", "greeting"]), "hello");
    assert_eq!(run(&["-3", "HGETALL", "missing"]), "");
    assert_eq!(run(&["RPUSH", "l", "a", "b"]), "2");
    assert_eq!(run(&["LRANGE", "l", "0", "-1"]), "a\nb");
    assert!(run(&["INFO", "server"]).contains("redis_version:7."));
}

#[test]
fn redis_benchmark_runs_clean() {
    let server = start_autocache();
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &server.port.to_string(),
            "-n",
            "20000",
            "-c",
            "20",
            "-P",
            "4",
            "-q",
        ])
        .args([
            "-t",
            "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100,mset",
        ])
        .output()
        .expect("run redis-benchmark");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for test in ["SET", "GET", "LRANGE_100", "MSET", "ZADD"] {
        assert!(stdout.contains(test), "{test} missing from:\n{stdout}");
    }
    assert!(!stdout.to_lowercase().contains("error"), "{stdout}");
}
