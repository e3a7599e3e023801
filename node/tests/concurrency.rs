//! Behaviour between clients: blocking pops, pub/sub, WATCH, expiry.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{bulk, start_autocache, start_redis, RawClient};
use resp::Frame;

fn send(client: &mut RawClient, args: &[&str]) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    client.send_raw(&RawClient::encode(&args));
}

fn read(client: &mut RawClient) -> Frame {
    let bytes = client.read_reply_bytes().expect("a reply");
    resp::value::parse(&bytes).unwrap().unwrap().0
}

#[test]
fn blpop_wakes_when_another_client_pushes() {
    let server = start_autocache();
    let mut waiter = server.client();
    send(&mut waiter, &["BLPOP", "queue", "5"]);
    std::thread::sleep(Duration::from_millis(100));
    let mut pusher = server.client();
    assert_eq!(pusher.cmd(&["RPUSH", "queue", "job"]), Frame::Integer(1));
    assert_eq!(
        read(&mut waiter),
        Frame::Array(vec![bulk("queue"), bulk("job")])
    );
    assert_eq!(pusher.cmd(&["EXISTS", "queue"]), Frame::Integer(0));
}

#[test]
fn blocked_clients_are_served_in_arrival_order() {
    let server = start_autocache();
    let mut first = server.client();
    let mut second = server.client();
    send(&mut first, &["BRPOP", "q", "5"]);
    std::thread::sleep(Duration::from_millis(100));
    send(&mut second, &["BRPOP", "q", "5"]);
    std::thread::sleep(Duration::from_millis(100));
    let mut pusher = server.client();
    pusher.cmd(&["LPUSH", "q", "a", "b"]);
    // RPOP order: the first blocked client gets "a", the tail.
    assert_eq!(read(&mut first), Frame::Array(vec![bulk("q"), bulk("a")]));
    assert_eq!(read(&mut second), Frame::Array(vec![bulk("q"), bulk("b")]));
}

#[test]
fn blocking_timeout_returns_null() {
    let server = start_autocache();
    let mut client = server.client();
    let started = Instant::now();
    assert_eq!(client.cmd(&["BLPOP", "nothing", "0.2"]), Frame::NullArray);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(client.cmd(&["PING"]), Frame::simple("PONG"));
}

#[test]
fn blmove_and_bzpopmin_wake_up() {
    let server = start_autocache();
    let mut mover = server.client();
    // A hash tag keeps both keys in one slot, so one log entry can move between them.
    send(
        &mut mover,
        &["BLMOVE", "{m}src", "{m}dst", "LEFT", "RIGHT", "5"],
    );
    let mut popper = server.client();
    send(&mut popper, &["BZPOPMIN", "z", "5"]);
    std::thread::sleep(Duration::from_millis(100));
    let mut writer = server.client();
    writer.cmd(&["RPUSH", "{m}src", "x"]);
    writer.cmd(&["ZADD", "z", "1.5", "m"]);
    assert_eq!(read(&mut mover), bulk("x"));
    assert_eq!(
        writer.cmd(&["LRANGE", "{m}dst", "0", "-1"]),
        Frame::Array(vec![bulk("x")])
    );
    assert_eq!(
        read(&mut popper),
        Frame::Array(vec![bulk("z"), bulk("m"), bulk("1.5")])
    );
}

#[test]
fn a_disconnected_waiter_does_not_swallow_data() {
    let server = start_autocache();
    let mut gone = server.client();
    send(&mut gone, &["BLPOP", "q", "0"]);
    std::thread::sleep(Duration::from_millis(100));
    drop(gone);
    std::thread::sleep(Duration::from_millis(100));
    let mut waiter = server.client();
    send(&mut waiter, &["BLPOP", "q", "5"]);
    std::thread::sleep(Duration::from_millis(100));
    server.client().cmd(&["RPUSH", "q", "v"]);
    assert_eq!(read(&mut waiter), Frame::Array(vec![bulk("q"), bulk("v")]));
}

#[test]
fn pubsub_in_resp2_and_resp3() {
    let server = start_autocache();
    let mut sub2 = server.client();
    assert_eq!(
        sub2.cmd(&["SUBSCRIBE", "news"]),
        Frame::Array(vec![bulk("subscribe"), bulk("news"), Frame::Integer(1)])
    );
    assert_eq!(
        sub2.cmd(&["GET", "x"]),
        Frame::error("ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
    );
    assert_eq!(
        sub2.cmd(&["PING"]),
        Frame::Array(vec![bulk("pong"), bulk("")])
    );
    let mut sub3 = server.client();
    sub3.cmd(&["HELLO", "3"]);
    assert_eq!(
        sub3.cmd(&["PSUBSCRIBE", "n*"]),
        Frame::Push(vec![bulk("psubscribe"), bulk("n*"), Frame::Integer(1)])
    );
    // RESP3 clients may run other commands while subscribed.
    assert_eq!(sub3.cmd(&["SET", "x", "1"]), Frame::ok());
    let mut publisher = server.client();
    assert_eq!(
        publisher.cmd(&["PUBLISH", "news", "hello"]),
        Frame::Integer(2)
    );
    assert_eq!(
        read(&mut sub2),
        Frame::Array(vec![bulk("message"), bulk("news"), bulk("hello")])
    );
    assert_eq!(
        read(&mut sub3),
        Frame::Push(vec![
            bulk("pmessage"),
            bulk("n*"),
            bulk("news"),
            bulk("hello")
        ])
    );
    assert_eq!(
        publisher.cmd(&["PUBSUB", "NUMSUB", "news", "other"]),
        Frame::Array(vec![
            bulk("news"),
            Frame::Integer(1),
            bulk("other"),
            Frame::Integer(0)
        ])
    );
    assert_eq!(publisher.cmd(&["PUBSUB", "NUMPAT"]), Frame::Integer(1));
    assert_eq!(
        sub2.cmd(&["UNSUBSCRIBE"]),
        Frame::Array(vec![bulk("unsubscribe"), bulk("news"), Frame::Integer(0)])
    );
    assert_eq!(sub2.cmd(&["GET", "x"]), bulk("1"));
}

#[test]
fn watch_fails_exec_after_another_clients_write() {
    let server = start_autocache();
    let mut a = server.client();
    let mut b = server.client();
    a.cmd(&["SET", "balance", "10"]);
    assert_eq!(a.cmd(&["WATCH", "balance"]), Frame::ok());
    b.cmd(&["INCRBY", "balance", "5"]);
    a.cmd(&["MULTI"]);
    assert_eq!(a.cmd(&["DECRBY", "balance", "10"]), Frame::simple("QUEUED"));
    assert_eq!(a.cmd(&["EXEC"]), Frame::NullArray);
    assert_eq!(a.cmd(&["GET", "balance"]), bulk("15"));
    // Without interference the transaction commits.
    a.cmd(&["WATCH", "balance"]);
    a.cmd(&["MULTI"]);
    a.cmd(&["DECRBY", "balance", "10"]);
    assert_eq!(a.cmd(&["EXEC"]), Frame::Array(vec![Frame::Integer(5)]));
}

#[test]
fn keys_expire_actively_and_lazily() {
    let server = start_autocache();
    let mut client = server.client();
    for i in 0..500 {
        client.cmd(&["SET", &format!("k{i}"), "v", "PX", "50"]);
    }
    client.cmd(&["SET", "lazy", "v", "PX", "50"]);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(client.cmd(&["GET", "lazy"]), Frame::Null);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if client.cmd(&["DBSIZE"]) == Frame::Integer(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expiry cycle removes expired keys"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn client_reply_off_and_skip() {
    let server = start_autocache();
    let mut client = server.client();
    send(&mut client, &["CLIENT", "REPLY", "OFF"]);
    send(&mut client, &["SET", "a", "1"]);
    send(&mut client, &["CLIENT", "REPLY", "SKIP"]);
    send(&mut client, &["CLIENT", "REPLY", "ON"]);
    assert_eq!(read(&mut client), Frame::ok());
    send(&mut client, &["CLIENT", "REPLY", "SKIP"]);
    send(&mut client, &["GET", "a"]);
    send(&mut client, &["GET", "a"]);
    assert_eq!(read(&mut client), bulk("1"));
}

#[test]
fn writes_across_slot_groups_are_refused_reads_are_not() {
    let server = start_autocache();
    let mut client = server.client();
    // "a" and "b" hash to slots 15495 and 3300: different groups of the default 16.
    assert_eq!(
        client.cmd(&["MSET", "a", "1", "b", "2"]),
        Frame::error("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(
        client.cmd(&["EXISTS", "a", "b"]),
        Frame::Integer(0),
        "nothing applied"
    );
    assert_eq!(client.cmd(&["MSET", "{t}a", "1", "{t}b", "2"]), Frame::ok());
    assert_eq!(client.cmd(&["SET", "b", "3"]), Frame::ok());
    assert_eq!(
        client.cmd(&["MGET", "{t}a", "b", "{t}b"]),
        Frame::Array(vec![bulk("1"), bulk("3"), bulk("2")])
    );
    // A transaction is one entry of one group: its keys and watches must share it.
    client.cmd(&["WATCH", "b"]);
    client.cmd(&["MULTI"]);
    client.cmd(&["INCR", "{t}a"]);
    assert_eq!(
        client.cmd(&["EXEC"]),
        Frame::error("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(client.cmd(&["GET", "{t}a"]), bulk("1"));
    client.cmd(&["MULTI"]);
    client.cmd(&["INCR", "{t}a"]);
    client.cmd(&["GET", "{t}b"]);
    assert_eq!(
        client.cmd(&["EXEC"]),
        Frame::Array(vec![Frame::Integer(2), bulk("2")])
    );
    // FLUSHALL reaches every group.
    assert_eq!(client.cmd(&["FLUSHALL"]), Frame::ok());
    assert_eq!(client.cmd(&["DBSIZE"]), Frame::Integer(0));
}

#[test]
fn pipelined_writes_and_reads_answer_in_order() {
    let server = start_autocache();
    let mut client = server.client();
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend(RawClient::encode(&[
            b"SET",
            format!("k{i}").as_bytes(),
            format!("{i}").as_bytes(),
        ]));
        batch.extend(RawClient::encode(&[b"GET", format!("k{i}").as_bytes()]));
        batch.extend(RawClient::encode(&[b"INCR", b"counter"]));
    }
    client.send_raw(&batch);
    for i in 0..500 {
        assert_eq!(read(&mut client), Frame::ok());
        assert_eq!(
            read(&mut client),
            bulk(&i.to_string()),
            "a read sees the write before it"
        );
        assert_eq!(read(&mut client), Frame::Integer(i + 1));
    }
}

/// A subscriber that stops reading is disconnected once the messages it has not read reach
/// Redis's `client-output-buffer-limit pubsub 32mb` (the kernel's socket buffers hold a few
/// more), rather than the server holding everything published to it; one that reads keeps
/// receiving. The same against redis-server.
#[test]
fn a_subscriber_that_stops_reading_is_disconnected_at_its_output_limit() {
    let message = "x".repeat(1 << 20);
    for (name, server) in [("autocache", start_autocache()), ("redis", start_redis())] {
        let default_cut_off = stalled_subscriber_cut_off(name, &server, &message, None);
        let cut_off = stalled_subscriber_cut_off(name, &server, &message, Some("pubsub 8mb 0 0"));
        assert!(
            cut_off + 16 <= default_cut_off,
            "{name}: cut off after {cut_off} MB with an 8 MB limit, {default_cut_off} MB with 32 MB"
        );
    }
}

/// Runs 100 PUBLISHes of `message` (1 MB) to a subscriber that reads and one that does not,
/// under `limit` if given; returns how many the stalled one was sent before it was cut off.
fn stalled_subscriber_cut_off(
    name: &str,
    server: &common::ServerProcess,
    message: &str,
    limit: Option<&str>,
) -> usize {
    const MESSAGES: usize = 100;
    {
        if let Some(limit) = limit {
            let mut config = server.client();
            assert_eq!(
                config.cmd(&["CONFIG", "SET", "client-output-buffer-limit", limit]),
                Frame::ok()
            );
        }
        let mut stalled = server.client();
        stalled.cmd(&["SUBSCRIBE", "feed"]);
        // The reader takes raw bytes as fast as they come: parsing each message as it grows
        // would make it a slow subscriber too.
        let mut reader = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        reader
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        reader
            .write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nfeed\r\n")
            .unwrap();
        let subscribed = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nfeed\r\n:1\r\n".len();
        let each = format!(
            "*3\r\n$7\r\nmessage\r\n$4\r\nfeed\r\n${}\r\n",
            message.len()
        )
        .len()
            + message.len()
            + 2;
        let mut confirmation = vec![0; subscribed];
        reader.read_exact(&mut confirmation).unwrap();
        let reading = std::thread::spawn(move || {
            let mut chunk = vec![0; 1 << 20];
            let mut read = 0;
            while read < MESSAGES * each {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
            read / each
        });
        let mut publisher = server.client();
        let receivers: Vec<Frame> = (0..MESSAGES)
            .map(|_| publisher.cmd(&["PUBLISH", "feed", message]))
            .collect();
        let first_without_stalled = receivers
            .iter()
            .position(|r| *r == Frame::Integer(1))
            .unwrap_or_else(|| {
                panic!("{name}: the stalled subscriber was never disconnected: {receivers:?}")
            });
        assert!(
            first_without_stalled <= 80,
            "{name}: disconnected only after {first_without_stalled} MB"
        );
        assert!(
            receivers[first_without_stalled..]
                .iter()
                .all(|r| *r == Frame::Integer(1)),
            "{name}: the reading subscriber was disconnected: {receivers:?}"
        );
        assert_eq!(reading.join().unwrap(), MESSAGES, "{name}: messages read");
        // What the kernel held for it is readable, then the connection ends (a read that
        // waits instead times out and fails the test).
        let held = std::iter::from_fn(|| stalled.read_reply_bytes()).count();
        eprintln!(
            "{name}: cut off after {first_without_stalled} messages of 1 MB, {held} of them read"
        );
        assert!(
            held < first_without_stalled,
            "{name}: read {held} messages, {first_without_stalled} published before it was cut off"
        );
        first_without_stalled
    }
}
