//! SCAN's guarantee under concurrent changes: every key (or element) present for the whole
//! iteration is returned at least once, whatever is added or removed between calls.

use std::collections::HashSet;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use resp::{CommandTable, Frame};
use tiering::{Caller, Db, ExecCtx};

fn run(db: &Db, words: &[&str]) -> Frame {
    let args: Vec<Bytes> = words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    let spec = CommandTable::get().lookup_request(&args).unwrap();
    db.execute(
        spec,
        &args,
        ExecCtx { now_ms: 1, seed: 7 },
        &Caller::default(),
    )
    .reply
}

fn text(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

/// Runs a full scan with `step` between calls; returns everything the scan returned.
fn scan_all(db: &Db, command: &[&str], mut step: impl FnMut(usize)) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    for call in 0.. {
        // The cursor follows the command name (SCAN) or the key (HSCAN, SSCAN).
        let mut words: Vec<&str> = command.to_vec();
        words.push(&cursor);
        words.extend(["COUNT", "7"]);
        let Frame::Array(reply) = run(db, &words) else {
            panic!("scan replies with an array");
        };
        let Frame::Array(items) = &reply[1] else {
            panic!("scan items are an array");
        };
        let step_by = if command[0] == "HSCAN" { 2 } else { 1 };
        for item in items.iter().step_by(step_by) {
            seen.insert(text(item));
        }
        cursor = text(&reply[0]);
        if cursor == "0" {
            break;
        }
        assert!(call < 100_000, "scan does not terminate");
        step(call);
    }
    seen
}

#[test]
fn keyspace_scan_returns_every_stable_key() {
    let db = Db::new(16);
    for i in 0..2000 {
        run(&db, &["SET", &format!("stable:{i}"), "v"]);
    }
    let mut rng = SmallRng::seed_from_u64(3);
    let seen = scan_all(&db, &["SCAN"], |call| {
        for j in 0..20 {
            run(&db, &["SET", &format!("new:{call}:{j}"), "v"]);
        }
        let victim = rng.random_range(0..500);
        run(&db, &["DEL", &format!("new:{victim}:0")]);
    });
    for i in 0..2000 {
        assert!(seen.contains(&format!("stable:{i}")), "stable:{i} missed");
    }
}

#[test]
fn collection_scans_survive_removals() {
    let db = Db::new(1);
    for i in 0..1000 {
        run(&db, &["SADD", "s", &format!("stable:{i}")]);
        run(&db, &["SADD", "s", &format!("doomed:{i}")]);
        run(&db, &["HSET", "h", &format!("stable:{i}"), "v"]);
        run(&db, &["HSET", "h", &format!("doomed:{i}"), "v"]);
    }
    for (command, remove) in [
        (["SSCAN", "s"], ["SREM", "s"]),
        (["HSCAN", "h"], ["HDEL", "h"]),
    ] {
        let mut next = 0;
        let seen = scan_all(&db, &command, |_| {
            // Removal swaps the last element into the hole: the scan must still see everything.
            for _ in 0..15 {
                let doomed = format!("doomed:{next}");
                run(&db, &[remove[0], remove[1], &doomed]);
                next += 1;
            }
        });
        for i in 0..1000 {
            assert!(
                seen.contains(&format!("stable:{i}")),
                "{command:?} missed stable:{i}"
            );
        }
    }
}
