//! The linearizability checker against histories with known verdicts (`testdata/`, copied from
//! the team's shared fixtures: Porcupine's test data, MIT licence), through the library and
//! through `jepsen check`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jepsen::model::{AppendString, Register};
use jepsen::{edn, jepsen_log, linearizable, operations, Verdict};

fn fixtures(folder: &str) -> Vec<(PathBuf, bool)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/linearizability")
        .join(folder);
    let expected = std::fs::read_to_string(dir.join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    let cases: Vec<(PathBuf, bool)> = expected
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (file, verdict) = line.split_once('\t').expect("file<TAB>verdict");
            let linearizable = match verdict.trim() {
                "linearizable" => true,
                "not-linearizable" => false,
                other => panic!("unknown verdict {other}"),
            };
            (dir.join(file), linearizable)
        })
        .collect();
    assert!(!cases.is_empty(), "no fixtures in {}", dir.display());
    cases
}

fn verdict_of(path: &Path, kv: bool) -> Verdict {
    let text = std::fs::read_to_string(path).unwrap();
    let events = if jepsen_log::is_jepsen_log(&text) {
        jepsen_log::parse_log(&text).unwrap()
    } else {
        edn::parse_history(&text).unwrap()
    };
    let operations = operations(&events).unwrap();
    let limit = Duration::from_secs(60);
    if kv {
        linearizable::check(&AppendString, &operations, limit)
    } else {
        linearizable::check(&Register, &operations, limit)
    }
}

fn check_all(folder: &str, kv: bool) {
    let mut wrong = Vec::new();
    let mut slowest = (Duration::ZERO, PathBuf::new());
    for (path, linearizable) in fixtures(folder) {
        let started = Instant::now();
        let verdict = verdict_of(&path, kv);
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, path.clone());
        }
        let right = match verdict {
            Verdict::Valid => linearizable,
            Verdict::Invalid(_) => !linearizable,
            Verdict::Unknown(_) => false,
        };
        if !right {
            wrong.push(format!(
                "{}: expected linearizable={linearizable}, got {verdict}",
                path.display()
            ));
        }
    }
    println!("slowest: {} in {:?}", slowest.1.display(), slowest.0);
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_jepsen_etcd_register_verdict_is_reproduced() {
    check_all("jepsen-etcd", false);
}

#[test]
fn every_key_value_verdict_is_reproduced() {
    check_all("kv", true);
}

#[test]
fn jepsen_check_exits_0_valid_1_invalid_2_unreadable() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
            .arg("check")
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/linearizability");
    let path = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let (code, out) = run(&["--workload", "register", &path("jepsen-etcd/etcd_002.log")]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.trim(), "valid");
    let (code, out) = run(&["--workload", "register", &path("jepsen-etcd/etcd_000.log")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with("invalid: the register is not linearizable"),
        "{out}"
    );
    let (code, out) = run(&["--workload", "kv", &path("kv/c10-bad.txt")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("key "), "{out}");
    let (code, out) = run(&["--workload", "kv", &path("README.md")]);
    assert_eq!(code, Some(2), "{out}");
}
