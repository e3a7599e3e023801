//! Differential tests: the same commands go to a real redis-server (the Debian package) and to
//! autocache, in RESP2 and in RESP3, and the replies must be byte-for-byte identical.
//!
//! Hand-written scripts live in `tests/differential/*.redis`, one command per line in
//! redis-cli's quoting. A line may start with a marker for replies whose order Redis leaves
//! undefined: `~` compares the elements as a multiset, `~2` compares field/value pairs as a
//! multiset. Generated sequences come from a seeded random generator over every family.

mod common;

use std::path::Path;

use bytes::BytesMut;
use common::{show, start_autocache_with, start_redis, RawClient};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use resp::{Frame, Proto};

/// One slot group: every key in one raft log, so multi-key commands over any keys work as in
/// standalone Redis (with more groups, keys of one write must share a group).
const STANDALONE: &[&str] = &["--groups", "1"];

/// How a reply is compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Order {
    Exact,
    Unordered,
    UnorderedPairs,
}

struct Step {
    line: String,
    args: Vec<Vec<u8>>,
    order: Order,
}

fn parse_script(text: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (order, rest) = if let Some(rest) = line.strip_prefix("~2 ") {
            (Order::UnorderedPairs, rest)
        } else if let Some(rest) = line.strip_prefix("~ ") {
            (Order::Unordered, rest)
        } else {
            (Order::Exact, line)
        };
        let args = resp::inline::split_args(rest.as_bytes()).expect("valid script line");
        steps.push(Step {
            line: line.to_string(),
            args,
            order,
        });
    }
    steps
}

fn encode(frame: &Frame, proto: Proto) -> Vec<u8> {
    let mut out = BytesMut::new();
    resp::encode(frame, proto, &mut out);
    out.to_vec()
}

/// Rewrites a reply so that element order does not matter.
fn normalize(bytes: &[u8], order: Order, proto: Proto) -> Vec<u8> {
    if order == Order::Exact {
        return bytes.to_vec();
    }
    let (frame, _) = resp::value::parse(bytes).unwrap().unwrap();
    let sort_items = |items: Vec<Frame>| {
        let mut encoded: Vec<(Vec<u8>, Frame)> =
            items.into_iter().map(|f| (encode(&f, proto), f)).collect();
        encoded.sort_by(|a, b| a.0.cmp(&b.0));
        encoded.into_iter().map(|(_, f)| f).collect::<Vec<_>>()
    };
    let normalized = match (frame, order) {
        (Frame::Map(pairs), _) => {
            let mut pairs: Vec<(Vec<u8>, (Frame, Frame))> = pairs
                .into_iter()
                .map(|(k, v)| (encode(&k, proto), (k, v)))
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Frame::Map(pairs.into_iter().map(|(_, p)| p).collect())
        }
        (Frame::Array(items), Order::UnorderedPairs) => {
            let mut pairs: Vec<Vec<Frame>> = items.chunks(2).map(|c| c.to_vec()).collect();
            pairs.sort_by_key(|p| encode(&p[0], proto));
            Frame::Array(pairs.into_iter().flatten().collect())
        }
        (Frame::Array(items), _) => Frame::Array(sort_items(items)),
        (Frame::Set(items), _) => Frame::Set(sort_items(items)),
        (other, _) => other,
    };
    encode(&normalized, proto)
}

struct Mismatch {
    source: String,
    proto: Proto,
    line: String,
    redis: Vec<u8>,
    autocache: Vec<u8>,
}

/// Runs steps against both servers on fresh connections, after FLUSHALL.
fn run(
    source: &str,
    steps: &[Step],
    redis_port: u16,
    autocache_port: u16,
    proto: Proto,
) -> Vec<Mismatch> {
    let mut redis = RawClient::connect(redis_port);
    let mut ours = RawClient::connect(autocache_port);
    for client in [&mut redis, &mut ours] {
        client.raw(&[b"FLUSHALL"]);
        if proto == Proto::Resp3 {
            client.raw(&[b"HELLO", b"3"]);
        }
    }
    let mut mismatches = Vec::new();
    for step in steps {
        let args: Vec<&[u8]> = step.args.iter().map(|a| a.as_slice()).collect();
        let expected = normalize(&redis.raw(&args), step.order, proto);
        let got = normalize(&ours.raw(&args), step.order, proto);
        if expected != got {
            mismatches.push(Mismatch {
                source: source.to_string(),
                proto,
                line: step.line.clone(),
                redis: expected,
                autocache: got,
            });
        }
    }
    mismatches
}

fn report(mismatches: &[Mismatch]) -> String {
    let mut out = format!("{} replies differ from redis-server:\n", mismatches.len());
    for m in mismatches.iter().take(60) {
        out.push_str(&format!(
            "  [{} {:?}] {}\n    redis:     {}\n    autocache: {}\n",
            m.source,
            m.proto,
            m.line,
            show(&m.redis),
            show(&m.autocache)
        ));
    }
    out
}

#[test]
fn hand_written_scripts_match_redis() {
    let redis = start_redis();
    let ours = start_autocache_with(STANDALONE);
    let dir = Path::new(&common::manifest_dir()).join("tests/differential");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected the differential scripts in {}",
        dir.display()
    );
    let mut mismatches = Vec::new();
    let mut commands = 0;
    for file in files {
        let steps = parse_script(&std::fs::read_to_string(&file).unwrap());
        commands += steps.len();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for proto in [Proto::Resp2, Proto::Resp3] {
            mismatches.extend(run(&name, &steps, redis.port, ours.port, proto));
        }
    }
    assert!(commands > 500, "only {commands} scripted commands");
    assert!(mismatches.is_empty(), "{}", report(&mismatches));
}

/// A generated command and how to compare its reply.
fn generate(rng: &mut SmallRng) -> Step {
    const KEYS: &[&str] = &["a", "b", "c", "{t}x", "{t}y"];
    let key = |rng: &mut SmallRng| KEYS[rng.random_range(0..KEYS.len())].to_string();
    let member = |rng: &mut SmallRng| {
        ["m1", "m2", "m3", "m4", "10", "-3", "x y"][rng.random_range(0..7)].to_string()
    };
    let int = |rng: &mut SmallRng| {
        [
            "0",
            "1",
            "-1",
            "2",
            "5",
            "-7",
            "100",
            "abc",
            "9223372036854775807",
        ][rng.random_range(0..9)]
        .to_string()
    };
    let float = |rng: &mut SmallRng| {
        ["1.5", "0", "-2", "inf", "-inf", "3", "0.1", "x"][rng.random_range(0..8)].to_string()
    };
    let idx = |rng: &mut SmallRng| {
        ["0", "1", "-1", "2", "-2", "10", "-10"][rng.random_range(0..7)].to_string()
    };
    let (k, k2) = (key(rng), key(rng));
    let (m, m2) = (member(rng), member(rng));
    let quote = |s: &str| format!("\"{s}\"");
    let (order, line) = match rng.random_range(0..90) {
        0 => (Order::Exact, format!("SET {k} {}", quote(&m))),
        1 => (Order::Exact, format!("GET {k}")),
        2 => (Order::Exact, format!("INCRBY {k} {}", int(rng))),
        3 => (Order::Exact, format!("APPEND {k} {}", quote(&m))),
        4 => (
            Order::Exact,
            format!("GETRANGE {k} {} {}", idx(rng), idx(rng)),
        ),
        5 => (
            Order::Exact,
            format!(
                "SETRANGE {k} {} {}",
                ["0", "2", "-1"][rng.random_range(0..3)],
                quote(&m)
            ),
        ),
        6 => (Order::Exact, format!("STRLEN {k}")),
        7 => (Order::Exact, format!("DEL {k} {k2}")),
        8 => (Order::Exact, format!("EXISTS {k} {k2}")),
        9 => (Order::Exact, format!("TYPE {k}")),
        10 => (
            Order::Exact,
            format!("RPUSH {k} {} {}", quote(&m), quote(&m2)),
        ),
        11 => (Order::Exact, format!("LPUSH {k} {}", quote(&m))),
        12 => (
            Order::Exact,
            format!("LRANGE {k} {} {}", idx(rng), idx(rng)),
        ),
        13 => (Order::Exact, format!("LPOP {k}")),
        14 => (
            Order::Exact,
            format!("RPOP {k} {}", ["1", "2", "0"][rng.random_range(0..3)]),
        ),
        15 => (Order::Exact, format!("LINDEX {k} {}", idx(rng))),
        16 => (Order::Exact, format!("LREM {k} {} {}", idx(rng), quote(&m))),
        17 => (
            Order::Exact,
            format!(
                "LINSERT {k} {} {} new",
                ["BEFORE", "AFTER"][rng.random_range(0..2)],
                quote(&m)
            ),
        ),
        18 => (Order::Exact, format!("LTRIM {k} {} {}", idx(rng), idx(rng))),
        19 => (
            Order::Exact,
            format!(
                "LMOVE {k} {k2} {} {}",
                ["LEFT", "RIGHT"][rng.random_range(0..2)],
                ["LEFT", "RIGHT"][rng.random_range(0..2)]
            ),
        ),
        20 => (Order::Exact, format!("LPOS {k} {}", quote(&m))),
        21 => (Order::Exact, format!("HSET {k} {} {}", quote(&m), int(rng))),
        22 => (Order::Exact, format!("HGET {k} {}", quote(&m))),
        23 => (Order::Exact, format!("HDEL {k} {}", quote(&m))),
        24 => (
            Order::Exact,
            format!("HINCRBY {k} {} {}", quote(&m), int(rng)),
        ),
        25 => (Order::UnorderedPairs, format!("HGETALL {k}")),
        26 => (Order::Exact, format!("HLEN {k}")),
        27 => (Order::Unordered, format!("HKEYS {k}")),
        28 => (Order::Exact, format!("HSETNX {k} {} v", quote(&m))),
        29 => (
            Order::Exact,
            format!("SADD {k} {} {}", quote(&m), quote(&m2)),
        ),
        30 => (Order::Exact, format!("SREM {k} {}", quote(&m))),
        31 => (Order::Unordered, format!("SMEMBERS {k}")),
        32 => (Order::Exact, format!("SISMEMBER {k} {}", quote(&m))),
        33 => (Order::Exact, format!("SCARD {k}")),
        34 => (Order::Unordered, format!("SINTER {k} {k2}")),
        35 => (Order::Unordered, format!("SUNION {k} {k2}")),
        36 => (Order::Unordered, format!("SDIFF {k} {k2}")),
        37 => (Order::Exact, format!("SINTERSTORE {k} {k} {k2}")),
        38 => (Order::Exact, format!("SMOVE {k} {k2} {}", quote(&m))),
        39 => (
            Order::Exact,
            format!("ZADD {k} {} {}", float(rng), quote(&m)),
        ),
        40 => (
            Order::Exact,
            format!(
                "ZADD {k} {} {} {}",
                ["NX", "XX", "GT", "LT", "CH", "INCR"][rng.random_range(0..6)],
                float(rng),
                quote(&m)
            ),
        ),
        41 => (
            Order::Exact,
            format!("ZRANGE {k} {} {} WITHSCORES", idx(rng), idx(rng)),
        ),
        42 => (
            Order::Exact,
            format!(
                "ZRANGEBYSCORE {k} {} {}",
                ["-inf", "(0", "1", "(1.5"][rng.random_range(0..4)],
                ["+inf", "3", "(3", "0"][rng.random_range(0..4)]
            ),
        ),
        43 => (
            Order::Exact,
            format!("ZINCRBY {k} {} {}", float(rng), quote(&m)),
        ),
        44 => (Order::Exact, format!("ZREM {k} {}", quote(&m))),
        45 => (Order::Exact, format!("ZRANK {k} {}", quote(&m))),
        46 => (Order::Exact, format!("ZSCORE {k} {}", quote(&m))),
        47 => (
            Order::Exact,
            format!(
                "ZCOUNT {k} {} {}",
                ["-inf", "0", "(1"][rng.random_range(0..3)],
                ["+inf", "2", "(5"][rng.random_range(0..3)]
            ),
        ),
        48 => (
            Order::Exact,
            format!("ZPOPMIN {k} {}", ["1", "2"][rng.random_range(0..2)]),
        ),
        49 => (
            Order::Exact,
            format!("ZUNIONSTORE {k} 2 {k} {k2} WEIGHTS 2 3"),
        ),
        50 => (Order::Exact, format!("ZINTER 2 {k} {k2} WITHSCORES")),
        51 => (Order::Exact, format!("ZREVRANGE {k} 0 -1 WITHSCORES")),
        52 => (
            Order::Exact,
            format!("ZREMRANGEBYRANK {k} {} {}", idx(rng), idx(rng)),
        ),
        53 => (Order::Exact, format!("INCRBYFLOAT {k} {}", float(rng))),
        54 => (
            Order::Exact,
            format!(
                "EXPIRE {k} 1000 {}",
                ["", "NX", "XX", "GT", "LT"][rng.random_range(0..5)]
            ),
        ),
        55 => (Order::Exact, format!("TTL {k}")),
        56 => (Order::Exact, format!("PERSIST {k}")),
        57 => (Order::Exact, format!("RENAME {k} {k2}")),
        58 => (Order::Exact, format!("COPY {k} {k2} REPLACE")),
        59 => (
            Order::Exact,
            format!("SETBIT {k} {} 1", ["0", "7", "13"][rng.random_range(0..3)]),
        ),
        60 => (Order::Exact, format!("BITCOUNT {k}")),
        61 => (Order::Exact, format!("GETDEL {k}")),
        62 => (
            Order::Exact,
            format!("HINCRBYFLOAT {k} {} {}", quote(&m), float(rng)),
        ),
        63 => (
            Order::Exact,
            format!(
                "ZRANGEBYLEX {k} {} {}",
                ["-", "[m1", "(m2", "[a"][rng.random_range(0..4)],
                ["+", "[m3", "(m4", "[z"][rng.random_range(0..4)]
            ),
        ),
        64 => (
            Order::Exact,
            format!(
                "LPOS {k} {} RANK {} COUNT {}",
                quote(&m),
                ["1", "-1", "2"][rng.random_range(0..3)],
                ["0", "1", "2"][rng.random_range(0..3)]
            ),
        ),
        65 => (
            Order::Exact,
            format!("SMISMEMBER {k} {} {}", quote(&m), quote(&m2)),
        ),
        66 => (
            Order::Exact,
            format!("ZMSCORE {k} {} {}", quote(&m), quote(&m2)),
        ),
        67 => (
            Order::Exact,
            format!(
                "BITPOS {k} {} {}",
                ["0", "1"][rng.random_range(0..2)],
                idx(rng)
            ),
        ),
        68 => (
            Order::Exact,
            format!(
                "GETEX {k} {}",
                ["PERSIST", "EX 500", "PX 700000", ""][rng.random_range(0..4)]
            ),
        ),
        69 => (
            Order::Exact,
            format!(
                "SET {k} {} {} {}",
                quote(&m),
                ["NX", "XX", ""][rng.random_range(0..3)],
                ["GET", "KEEPTTL", "EX 100", ""][rng.random_range(0..4)]
            ),
        ),
        70 => (Order::Exact, format!("MSETNX {k} 1 {k2} 2")),
        71 => (Order::Exact, format!("RPOPLPUSH {k} {k2}")),
        72 => (
            Order::Exact,
            format!(
                "ZUNION 2 {k} {k2} WITHSCORES AGGREGATE {}",
                ["SUM", "MIN", "MAX"][rng.random_range(0..3)]
            ),
        ),
        73 => (Order::Exact, format!("SUNIONSTORE {k} {k} {k2}")),
        74 => (
            Order::Exact,
            format!(
                "LMPOP 2 {k} {k2} {} COUNT {}",
                ["LEFT", "RIGHT"][rng.random_range(0..2)],
                ["1", "3"][rng.random_range(0..2)]
            ),
        ),
        75 => (
            Order::Exact,
            format!(
                "ZMPOP 2 {k} {k2} {} COUNT 2",
                ["MIN", "MAX"][rng.random_range(0..2)]
            ),
        ),
        76 => (
            Order::Exact,
            format!(
                "ZREVRANGEBYSCORE {k} +inf -inf WITHSCORES LIMIT {} {}",
                ["0", "1"][rng.random_range(0..2)],
                ["1", "-1"][rng.random_range(0..2)]
            ),
        ),
        77 => (
            Order::Exact,
            format!(
                "ZRANGE {k} {} {} BYSCORE REV",
                ["+inf", "5", "(2"][rng.random_range(0..3)],
                ["-inf", "0", "(1"][rng.random_range(0..3)]
            ),
        ),
        78 => (Order::Exact, format!("ZRANGESTORE {k2} {k} 0 {}", idx(rng))),
        79 => (Order::Exact, format!("ZDIFFSTORE {k} 2 {k} {k2}")),
        80 => (Order::Exact, format!("ZINTERCARD 2 {k} {k2}")),
        81 => (
            Order::Exact,
            format!(
                "SINTERCARD 2 {k} {k2} LIMIT {}",
                ["0", "1"][rng.random_range(0..2)]
            ),
        ),
        82 => (
            Order::Exact,
            format!("HMGET {k} {} {}", quote(&m), quote(&m2)),
        ),
        83 => (Order::Exact, format!("HSTRLEN {k} {}", quote(&m))),
        84 => (Order::Exact, format!("LSET {k} {} {}", idx(rng), quote(&m))),
        85 => (
            Order::Exact,
            format!(
                "BITFIELD {k} {} {} {} {}",
                ["INCRBY", "SET"][rng.random_range(0..2)],
                ["u8", "i5", "u2"][rng.random_range(0..3)],
                ["0", "#1", "3"][rng.random_range(0..3)],
                int(rng)
            ),
        ),
        86 => (
            Order::Exact,
            format!(
                "SORT {k} {}",
                ["ALPHA", "DESC", "LIMIT 0 2", "ALPHA DESC"][rng.random_range(0..4)]
            ),
        ),
        87 => (Order::Exact, format!("OBJECT ENCODING {k}")),
        88 => (
            Order::Exact,
            format!(
                "ZREMRANGEBYSCORE {k} {} {}",
                ["-inf", "(0", "1"][rng.random_range(0..3)],
                ["+inf", "(3", "2"][rng.random_range(0..3)]
            ),
        ),
        _ => (
            Order::Exact,
            format!("HSETNX {k} {} {}", quote(&m), int(rng)),
        ),
    };
    let args = resp::inline::split_args(line.trim().as_bytes()).expect("generated line parses");
    Step { line, args, order }
}

#[test]
fn generated_sequences_match_redis() {
    let redis = start_redis();
    let ours = start_autocache_with(STANDALONE);
    let mut mismatches = Vec::new();
    for seed in 0..24u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let steps: Vec<Step> = (0..500).map(|_| generate(&mut rng)).collect();
        let proto = if seed % 2 == 0 {
            Proto::Resp2
        } else {
            Proto::Resp3
        };
        mismatches.extend(run(
            &format!("seed {seed}"),
            &steps,
            redis.port,
            ours.port,
            proto,
        ));
    }
    assert!(mismatches.is_empty(), "{}", report(&mismatches));
}

/// HELLO's reply differs from Redis's only in the connection id: same fields, same order, same
/// types, in both protocol versions.
#[test]
fn hello_matches_redis_but_for_the_id_and_mode() {
    let redis = start_redis();
    let ours = start_autocache_with(STANDALONE);
    for version in ["2", "3"] {
        let mut replies = Vec::new();
        for port in [redis.port, ours.port] {
            let mut client = RawClient::connect(port);
            let bytes = client.raw(&[b"HELLO", version.as_bytes()]);
            let (frame, _) = resp::value::parse(&bytes).unwrap().unwrap();
            let normalized = match frame {
                Frame::Map(pairs) => Frame::Map(
                    pairs
                        .into_iter()
                        .map(|(k, v)| match &k {
                            Frame::Bulk(name) if &name[..] == b"id" => (k, Frame::Integer(0)),
                            Frame::Bulk(name) if &name[..] == b"mode" => (k, Frame::Null),
                            _ => (k, v),
                        })
                        .collect(),
                ),
                Frame::Array(items) => {
                    let mut items = items;
                    for i in (0..items.len()).step_by(2) {
                        if items[i] == Frame::Bulk(bytes::Bytes::from_static(b"id")) {
                            items[i + 1] = Frame::Integer(0);
                        }
                        // AutoCache is always a cluster (of slot groups); Redis here is not.
                        if items[i] == Frame::Bulk(bytes::Bytes::from_static(b"mode")) {
                            items[i + 1] = Frame::Null;
                        }
                    }
                    Frame::Array(items)
                }
                other => other,
            };
            let proto = if version == "3" {
                Proto::Resp3
            } else {
                Proto::Resp2
            };
            replies.push(show(&encode(&normalized, proto)));
        }
        assert_eq!(replies[0], replies[1], "HELLO {version}");
    }
}
