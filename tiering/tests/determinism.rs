//! The engine is a deterministic function of (state, command, clock, seed): two engines with
//! different hash seeds, fed the same commands with the same contexts, give the same replies
//! and end in the same state. This is what lets a replicated log drive every replica.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use resp::{CommandTable, Frame};
use tiering::{Caller, Db, ExecCtx};

fn run(db: &Db, words: &[String], ctx: ExecCtx) -> Frame {
    let args: Vec<Bytes> = words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    let spec = CommandTable::get()
        .lookup_request(&args)
        .expect("known command");
    assert!(spec.arity_ok(args.len()), "{words:?}");
    db.execute(spec, &args, ctx, &Caller::default()).reply
}

fn random_command(rng: &mut SmallRng) -> Vec<String> {
    let key = format!("k{}", rng.random_range(0..4));
    let member = format!("m{}", rng.random_range(0..12));
    let n = rng.random_range(0..5).to_string();
    let line = match rng.random_range(0..16) {
        0 => format!("SADD {key} {member} m{}", rng.random_range(0..12)),
        1 => format!("SPOP {key}"),
        2 => format!("SPOP {key} {n}"),
        3 => format!("SRANDMEMBER {key} -{n}"),
        4 => format!("HSET h{key} {member} {n}"),
        5 => format!("HRANDFIELD h{key} {n} WITHVALUES"),
        6 => format!("HDEL h{key} {member}"),
        7 => format!("ZADD z{key} {n} {member}"),
        8 => format!("ZRANDMEMBER z{key} -{n} WITHSCORES"),
        9 => format!("SREM {key} {member}"),
        10 => format!("EXPIRE {key} {}", rng.random_range(1..5)),
        11 => format!("SINTERSTORE s{key} {key} k{}", rng.random_range(0..4)),
        12 => format!("SUNIONSTORE u{key} {key} k{}", rng.random_range(0..4)),
        13 => format!("RPUSH l{key} {member}"),
        14 => format!("LMOVE l{key} l{} LEFT RIGHT", rng.random_range(0..4)),
        _ => format!("ZPOPMIN z{key}"),
    };
    line.split(' ').map(str::to_string).collect()
}

/// Every key with its type and contents, in a canonical order.
fn dump(db: &Db, ctx: ExecCtx) -> Vec<(String, Frame)> {
    let Frame::Array(keys) = run(db, &["KEYS".into(), "*".into()], ctx) else {
        panic!("KEYS returns an array");
    };
    let mut names: Vec<String> = keys
        .into_iter()
        .map(|k| match k {
            Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("key {other:?}"),
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|key| {
            let kind = run(db, &["TYPE".into(), key.clone()], ctx);
            let words: Vec<String> = match kind {
                Frame::Simple(ref t) if t == "set" => vec!["SMEMBERS".into(), key.clone()],
                Frame::Simple(ref t) if t == "hash" => vec!["HGETALL".into(), key.clone()],
                Frame::Simple(ref t) if t == "zset" => {
                    vec![
                        "ZRANGE".into(),
                        key.clone(),
                        "0".into(),
                        "-1".into(),
                        "WITHSCORES".into(),
                    ]
                }
                Frame::Simple(ref t) if t == "list" => {
                    vec!["LRANGE".into(), key.clone(), "0".into(), "-1".into()]
                }
                other => panic!("unexpected type {other:?}"),
            };
            // Sets and hashes are compared in their stored order, which must match too.
            let contents = run(db, &words, ctx);
            let ttl = run(db, &["PEXPIRETIME".into(), key.clone()], ctx);
            (key, Frame::Array(vec![kind, contents, ttl]))
        })
        .collect()
}

#[test]
fn same_commands_same_contexts_same_state() {
    for seed in 0..20u64 {
        let (a, b) = (Db::new(16), Db::new(16));
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut now = 1_700_000_000_000u64;
        for _ in 0..400 {
            now += rng.random_range(0..700);
            let ctx = ExecCtx {
                now_ms: now,
                seed: rng.random(),
            };
            let words = random_command(&mut rng);
            assert_eq!(
                run(&a, &words, ctx),
                run(&b, &words, ctx),
                "seed {seed}: {words:?}"
            );
        }
        let ctx = ExecCtx {
            now_ms: now,
            seed: 0,
        };
        assert_eq!(dump(&a, ctx), dump(&b, ctx), "seed {seed}");
    }
}

#[test]
fn reads_leave_expired_keys_in_place() {
    let db = Db::new(4);
    let t0 = ExecCtx {
        now_ms: 1_000,
        seed: 1,
    };
    let later = ExecCtx {
        now_ms: 5_000,
        seed: 2,
    };
    run(
        &db,
        &[
            "SET".into(),
            "k".into(),
            "v".into(),
            "PX".into(),
            "100".into(),
        ],
        t0,
    );
    assert_eq!(run(&db, &["GET".into(), "k".into()], later), Frame::Null);
    assert_eq!(
        run(&db, &["EXISTS".into(), "k".into()], later),
        Frame::Integer(0)
    );
    // Still stored: only a write (or the expiry cycle) removes it.
    assert_eq!(db.key_counts().0, 1);
    run(&db, &["DEL".into(), "k".into()], later);
    assert_eq!(db.key_counts().0, 0);
}

#[test]
fn relative_ttls_resolve_against_the_callers_clock() {
    let (a, b) = (Db::new(1), Db::new(1));
    let ctx = ExecCtx {
        now_ms: 10_000,
        seed: 0,
    };
    for db in [&a, &b] {
        run(
            db,
            &[
                "SET".into(),
                "k".into(),
                "v".into(),
                "EX".into(),
                "10".into(),
            ],
            ctx,
        );
    }
    // Applied at different wall-clock times, the deadline is the same.
    let expected = Frame::Integer(20_000);
    assert_eq!(run(&a, &["PEXPIRETIME".into(), "k".into()], ctx), expected);
    assert_eq!(run(&b, &["PEXPIRETIME".into(), "k".into()], ctx), expected);
}

#[test]
fn absolute_forms_apply_identically_later() {
    let (original, replayed) = (Db::new(4), Db::new(4));
    let proposed = ExecCtx {
        now_ms: 50_000,
        seed: 9,
    };
    let applied_late = ExecCtx {
        now_ms: 50_750,
        seed: 9,
    };
    let commands: Vec<Vec<String>> = [
        "SET a v EX 100",
        "SETEX b 30 v",
        "PSETEX c 4000 v",
        "SET d v",
        "EXPIRE d 20 NX",
        "PEXPIRE d 900 LT",
        "GETEX a PX 1500",
    ]
    .iter()
    .map(|line| line.split(' ').map(str::to_string).collect())
    .collect();
    for words in &commands {
        let args: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let spec = CommandTable::get().lookup_request(&args).unwrap();
        let expected = original
            .execute(spec, &args, proposed, &Caller::default())
            .reply;
        // What a log would store, applied later on another replica.
        let stored =
            tiering::effect::absolute_deadlines(spec, &args, proposed.now_ms).unwrap_or(args);
        let stored_spec = CommandTable::get().lookup_request(&stored).unwrap();
        let got = replayed
            .execute(stored_spec, &stored, applied_late, &Caller::default())
            .reply;
        assert_eq!(got, expected, "{words:?}");
    }
    for key in ["a", "b", "c", "d"] {
        let query = ["PEXPIRETIME".to_string(), key.to_string()];
        assert_eq!(
            run(&original, &query, proposed),
            run(&replayed, &query, proposed),
            "{key}"
        );
    }
}
