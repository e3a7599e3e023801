//! The CI matrix: `jepsen test` for real (three nodes in network namespaces, needs root) with
//! the register and list-append workloads under each nemesis, the register under all of them
//! combined, set and counter under partitions and kills, every run a pass; and the unsafe
//! stale-read mode of the server reported invalid, which proves the whole chain (clients,
//! history, checker) can fail.

use std::path::Path;
use std::process::Command;

/// Runs `jepsen test` and returns its exit code and output.
fn jepsen_test(
    nodes: usize,
    workload: &str,
    nemesis: &str,
    seed: u64,
    time_limit: u64,
    extra: &[&str],
    out: &Path,
) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args([
            "test",
            "--nodes",
            &nodes.to_string(),
            "--workload",
            workload,
        ])
        .args(["--nemesis", nemesis])
        .args(["--time-limit", &time_limit.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--groups", "8"])
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run jepsen");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

fn valid_under(nemesis: &str, seed: u64) {
    workload_valid_under("register", nemesis, seed);
}

fn workload_valid_under(workload: &str, nemesis: &str, seed: u64) {
    workload_valid_on(3, workload, nemesis, seed);
}

fn workload_valid_on(nodes: usize, workload: &str, nemesis: &str, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (code, output) = jepsen_test(nodes, workload, nemesis, seed, 25, &[], dir.path());
    println!("{output}");
    assert_eq!(
        code,
        Some(0),
        "{workload} under {nemesis} is not a pass:\n{output}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert!(summary["ok"].as_u64().unwrap() > 100, "{summary}");
    if nemesis != "none" {
        assert!(
            !summary["faults"].as_array().unwrap().is_empty(),
            "no fault injected: {summary}"
        );
    }
    for file in [
        "history.edn",
        "history.jsonl",
        "verdict.txt",
        "report.html",
        "cluster/n1.log",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    // The saved history re-checks to the same verdict.
    let recheck = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["check", "--workload", workload])
        .arg(dir.path().join("history.edn"))
        .output()
        .unwrap();
    assert_eq!(
        recheck.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&recheck.stdout)
    );
}

#[test]
fn register_without_faults_is_linearizable() {
    valid_under("none", 1);
}

#[test]
fn register_through_partitions_is_linearizable() {
    valid_under("partition", 2);
}

#[test]
fn register_through_kills_is_linearizable() {
    valid_under("kill", 3);
}

#[test]
fn register_through_pauses_is_linearizable() {
    valid_under("pause", 4);
}

#[test]
fn register_through_clock_skew_is_linearizable() {
    valid_under("clock", 8);
}

#[test]
fn set_through_partitions_and_kills_loses_no_element() {
    workload_valid_under("set", "partition,kill", 6);
}

#[test]
fn counter_through_partitions_and_kills_stays_within_bounds() {
    workload_valid_under("counter", "partition,kill", 7);
}

#[test]
fn register_through_every_fault_combined_is_linearizable() {
    valid_under("all", 10);
}

/// Five nodes, three replicas per group: replicas move between nodes (and leaders with them)
/// while partitions and kills come and go.
#[test]
fn register_through_membership_changes_partitions_and_kills_is_linearizable() {
    workload_valid_on(5, "register", "membership,partition,kill", 15);
}

#[test]
fn list_append_through_membership_changes_and_kills_has_no_anomaly() {
    workload_valid_on(5, "list-append", "membership,kill", 16);
}

#[test]
fn list_append_without_faults_has_no_anomaly() {
    workload_valid_under("list-append", "none", 11);
}

#[test]
fn list_append_through_partitions_has_no_anomaly() {
    workload_valid_under("list-append", "partition", 9);
}

#[test]
fn list_append_through_kills_has_no_anomaly() {
    workload_valid_under("list-append", "kill", 12);
}

#[test]
fn list_append_through_pauses_has_no_anomaly() {
    workload_valid_under("list-append", "pause", 13);
}

#[test]
fn list_append_through_clock_skew_has_no_anomaly() {
    workload_valid_under("list-append", "clock", 14);
}

#[test]
fn an_interrupted_run_stops_and_removes_its_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args([
            "test",
            "--nodes",
            "3",
            "--nemesis",
            "partition",
            "--time-limit",
            "300",
        ])
        .args(["--groups", "8"])
        .arg("--out")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("aj{}n", child.id());
    let namespaces = || {
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count()
    };
    let started = std::time::Instant::now();
    while namespaces() < 3 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the run never set up"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(8));
    // SAFETY: the pid is our child's, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let stopped = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < std::time::Duration::from_secs(30),
            "no exit after SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        status.code(),
        Some(2),
        "an interrupted run is not a verdict"
    );
    assert_eq!(namespaces(), 0, "namespaces left behind");
    assert!(
        dir.path().join("history.edn").is_file(),
        "the history so far is kept"
    );
}

#[test]
fn stale_reads_of_the_unsafe_mode_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (code, output) = jepsen_test(
        3,
        "register",
        "none",
        5,
        15,
        &["--server-arg=--unsafe-stale-reads"],
        dir.path(),
    );
    assert_eq!(
        code,
        Some(1),
        "the unsafe mode was not reported invalid:\n{output}"
    );
    assert!(output.contains("is not linearizable"), "{output}");
    assert!(
        output.contains("The smallest window no order explains"),
        "no window shown: {output}"
    );
    assert!(dir.path().join("report.html").is_file());
}
