//! Protocol tests: raw RESP bytes over TCP against a started autocache process.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{bulk, show, start_autocache, start_autocache_with, RawClient};
use resp::Frame;

#[test]
fn split_frames_byte_by_byte() {
    let server = start_autocache();
    let mut client = server.client();
    let request = RawClient::encode(&[b"SET", b"split", b"value"]);
    for byte in &request {
        client.send_raw(&[*byte]);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(client.read_reply_bytes().unwrap(), b"+OK\r\n");
    assert_eq!(client.cmd(&["GET", "split"]), bulk("value"));
}

#[test]
fn long_pipeline_in_one_write() {
    let server = start_autocache();
    let mut client = server.client();
    let mut batch = Vec::new();
    for i in 0..20_000 {
        batch.extend(RawClient::encode(&[b"INCR", b"counter"]));
        if i % 1000 == 0 {
            batch.extend(RawClient::encode(&[b"PING"]));
        }
    }
    client.send_raw(&batch);
    let mut last = 0;
    let mut pongs = 0;
    for _ in 0..20_020 {
        let reply = client.read_reply_bytes().unwrap();
        if reply == b"+PONG\r\n" {
            pongs += 1;
            continue;
        }
        let text = String::from_utf8(reply).unwrap();
        let n: i64 = text.trim_start_matches(':').trim_end().parse().unwrap();
        assert_eq!(n, last + 1, "replies arrive in request order");
        last = n;
    }
    assert_eq!((last, pongs), (20_000, 20));
}

#[test]
fn inline_commands_like_telnet() {
    let server = start_autocache();
    let mut client = server.client();
    client.send_raw(b"SET greeting \"hello world\"\r\nGET greeting\nPING\r\n\r\n");
    assert_eq!(client.read_reply_bytes().unwrap(), b"+OK\r\n");
    assert_eq!(
        client.read_reply_bytes().unwrap(),
        b"$11\r\nhello world\r\n"
    );
    assert_eq!(client.read_reply_bytes().unwrap(), b"+PONG\r\n");
}

/// Sends `garbage`, expects `error` and then the connection closed.
fn assert_protocol_error(garbage: &[u8], error: &str) {
    let server = start_autocache();
    let mut client = server.client();
    client.send_raw(garbage);
    let reply = client.read_reply_bytes().expect("an error before closing");
    assert_eq!(show(&reply), format!("-ERR Protocol error: {error}\\r\\n"));
    assert!(
        client.is_closed(),
        "connection closes after a protocol error"
    );
    // The server keeps serving others.
    assert_eq!(server.client().cmd(&["PING"]), Frame::simple("PONG"));
}

#[test]
fn garbage_gets_redis_protocol_errors() {
    assert_protocol_error(b"*2\r\n$3\r\nGET\r\n+oops\r\n", "expected '$', got '+'");
    assert_protocol_error(b"*abc\r\n", "invalid multibulk length");
    assert_protocol_error(b"*1\r\n$-5\r\n", "invalid bulk length");
    assert_protocol_error(b"SET \"unbalanced\r\n", "unbalanced quotes in request");
}

#[test]
fn huge_declared_lengths_are_refused_without_allocating() {
    // Over proto-max-bulk-len: refused at once.
    assert_protocol_error(b"*1\r\n$600000000\r\n", "invalid bulk length");
    assert_protocol_error(b"*3000000000\r\n", "invalid multibulk length");
    // A huge but legal count with nothing behind it: the server waits, allocating nothing
    // beyond what was sent, and stays responsive.
    let server = start_autocache();
    let mut hog = server.client();
    hog.send_raw(b"*2000000000\r\n$4\r\nPING\r\n");
    let mut other = server.client();
    assert_eq!(other.cmd(&["PING"]), Frame::simple("PONG"));
    let info = other.cmd(&["INFO", "memory"]);
    let (Frame::Bulk(text) | Frame::Verbatim(text)) = info else {
        panic!("INFO replies with text");
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let rss: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_rss:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        rss < 200 * 1024 * 1024,
        "rss {rss} after a 2e9-argument header"
    );
}

#[test]
fn too_long_inline_requests_are_refused() {
    let line = vec![b'a'; 70 * 1024];
    assert_protocol_error(&line, "too big inline request");
}

#[test]
fn query_buffer_limit_disconnects() {
    let server = start_autocache();
    let mut admin = server.client();
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "client-query-buffer-limit", "1mb"]),
        Frame::ok()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    // A 10 MB bulk argument (allowed by proto-max-bulk-len) sent slowly over the 1 MB limit.
    stream
        .write_all(b"*2\r\n$4\r\nECHO\r\n$10000000\r\n")
        .unwrap();
    let chunk = vec![b'x'; 256 * 1024];
    let mut closed = false;
    for _ in 0..40 {
        if stream.write_all(&chunk).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !closed {
        let mut client = RawClient::connect(server.port);
        drop(client.cmd(&["PING"]));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        closed = matches!(std::io::Read::read(&mut stream, &mut buf), Ok(0) | Err(_));
    }
    assert!(
        closed,
        "a client over client-query-buffer-limit is disconnected"
    );
    assert_eq!(admin.cmd(&["PING"]), Frame::simple("PONG"));
}

#[test]
fn unauthenticated_clients_are_limited() {
    let server = start_autocache_with(&["--requirepass", "secret"]);
    let mut client = server.client();
    assert_eq!(
        client.cmd(&["GET", "a"]),
        Frame::error("NOAUTH Authentication required.")
    );
    assert_eq!(
        client.cmd(&["AUTH", "wrong"]),
        Frame::error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(client.cmd(&["AUTH", "secret"]), Frame::ok());
    assert_eq!(client.cmd(&["SET", "a", "1"]), Frame::ok());
    // HELLO can authenticate and switch protocol at once.
    let mut fresh = server.client();
    let reply = fresh.cmd(&["HELLO", "3", "AUTH", "default", "secret"]);
    assert!(matches!(reply, Frame::Map(_)), "{reply:?}");
    // Before AUTH, only small requests are accepted.
    let mut big = server.client();
    let many: Vec<&[u8]> = std::iter::repeat_n(&b"x"[..], 12).collect();
    let reply = big.raw(&many);
    assert_eq!(
        show(&reply),
        "-ERR Protocol error: unauthenticated multibulk length\\r\\n"
    );
}

#[test]
fn unsupported_families_get_the_unknown_command_error() {
    let server = start_autocache();
    let mut client = server.client();
    for (command, args) in [
        ("XADD", vec!["s", "*", "f", "v"]),
        ("PFADD", vec!["h", "a"]),
        ("GEOADD", vec!["g", "1", "2", "m"]),
        ("EVAL", vec!["return 1", "0"]),
    ] {
        let mut full = vec![command];
        full.extend(args.iter().copied());
        let quoted: String = args.iter().map(|a| format!("'{a}' ")).collect();
        assert_eq!(
            client.cmd(&full),
            Frame::error(format!(
                "ERR unknown command '{command}', with args beginning with: {quoted}"
            ))
        );
    }
}

#[test]
fn quit_replies_then_closes() {
    let server = start_autocache();
    let mut client = server.client();
    assert_eq!(client.cmd(&["QUIT"]), Frame::ok());
    assert!(client.is_closed());
}

#[test]
fn client_kill_closes_the_target() {
    let server = start_autocache();
    let mut victim = server.client();
    let Frame::Integer(id) = victim.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is an integer");
    };
    let mut admin = server.client();
    let killed = admin.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]);
    assert_eq!(killed, Frame::Integer(1));
    assert!(victim.is_closed());
    let list = admin.cmd(&["CLIENT", "LIST"]);
    let Frame::Bulk(text) = list else {
        panic!("CLIENT LIST is text");
    };
    assert!(!String::from_utf8_lossy(&text).contains(&format!("id={id} ")));
}

#[test]
fn maxclients_refuses_extra_connections() {
    let server = start_autocache_with(&["--maxclients", "2"]);
    let mut a = server.client();
    let mut b = server.client();
    assert_eq!(a.cmd(&["PING"]), Frame::simple("PONG"));
    assert_eq!(b.cmd(&["PING"]), Frame::simple("PONG"));
    let mut c = server.client();
    assert_eq!(
        c.read_reply_bytes().unwrap(),
        b"-ERR max number of clients reached\r\n"
    );
}

#[test]
fn shutdown_command_stops_the_server() {
    let mut server = start_autocache();
    let mut client = server.client();
    client.send_raw(&RawClient::encode(&[b"SHUTDOWN"]));
    assert!(
        client.read_reply_bytes().is_none(),
        "SHUTDOWN closes without a reply"
    );
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("server exits");
    assert!(status.success(), "{status}");
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let mut server = start_autocache();
    let mut client = server.client();
    assert_eq!(client.cmd(&["SET", "a", "1"]), Frame::ok());
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("server exits");
    assert!(status.success(), "{status}");
}

#[test]
fn taken_port_and_bad_config_are_clear_errors() {
    let server = start_autocache();
    let out = Command::new(env!("CARGO_BIN_EXE_autocache"))
        .args(["server", "--port", &server.port.to_string(), "--data-dir"])
        .arg(server.dir.join("second"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen on 127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let config = server.dir.join("bad.toml");
    std::fs::write(&config, "prot = 7000\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_autocache"))
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `prot`"), "{stderr}");

    std::fs::write(&config, "port = \"abc\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_autocache"))
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("port"));
}

#[test]
fn every_listed_command_is_implemented() {
    let server = start_autocache();
    let mut admin = server.client();
    let Frame::Array(names) = admin.cmd(&["COMMAND", "LIST"]) else {
        panic!("COMMAND LIST is an array");
    };
    let Frame::Integer(count) = admin.cmd(&["COMMAND", "COUNT"]) else {
        panic!("COMMAND COUNT is an integer");
    };
    let names: Vec<String> = names
        .into_iter()
        .map(|n| match n {
            Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(names.len() as i64 > count, "subcommands are listed too");
    let mut checked = 0;
    for name in &names {
        if name == "shutdown" {
            continue;
        }
        let Frame::Array(info) = admin.cmd(&["COMMAND", "INFO", name]) else {
            panic!("COMMAND INFO {name}");
        };
        let Frame::Array(fields) = &info[0] else {
            panic!("COMMAND INFO {name} entry");
        };
        let Frame::Integer(arity) = fields[1] else {
            panic!("arity of {name}");
        };
        // Enough dummy arguments to pass the arity check; "0.01" keeps blocking commands short.
        let mut args: Vec<String> = name.split('|').map(str::to_string).collect();
        while (args.len() as i64) < arity.abs() {
            args.push("0.01".to_string());
        }
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut client = server.client();
        let reply = client.cmd(&words);
        let container = name.split('|').next().unwrap();
        assert_ne!(
            reply,
            Frame::error(format!("ERR unknown command '{name}'")),
            "{name}"
        );
        assert!(
            !matches!(&reply, Frame::Error(e) if e.starts_with(&format!("ERR unknown command '{container}'"))),
            "{name}: {reply:?}"
        );
        checked += 1;
    }
    assert!(checked > 200, "checked {checked} commands");
}

#[test]
fn info_has_every_section_in_redis_format() {
    let server = start_autocache();
    let mut client = server.client();
    client.cmd(&["SET", "a", "1"]);
    client.cmd(&["NOSUCH"]);
    let Frame::Bulk(text) = client.cmd(&["INFO", "everything"]) else {
        panic!("INFO is text in RESP2");
    };
    let text = String::from_utf8(text.to_vec()).unwrap();
    for section in [
        "Server",
        "Clients",
        "Memory",
        "Persistence",
        "Stats",
        "Replication",
        "CPU",
        "Errorstats",
        "Cluster",
        "Keyspace",
        "Commandstats",
    ] {
        assert!(
            text.contains(&format!("# {section}\r\n")),
            "section {section} missing"
        );
    }
    for field in [
        "redis_version:7.",
        "connected_clients:",
        "used_memory:",
        "db0:keys=1,expires=0",
        "cmdstat_set:calls=1,",
        "errorstat_ERR:count=",
    ] {
        assert!(text.contains(field), "{field} missing from INFO");
    }
    for line in text
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(line.contains(':'), "not a field line: {line:?}");
    }
    let Frame::Bulk(one) = client.cmd(&["INFO", "keyspace"]) else {
        panic!("INFO keyspace is text");
    };
    assert_eq!(
        &one[..],
        b"# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"
    );
}

#[test]
fn a_transaction_cannot_queue_without_bound() {
    let server = start_autocache();
    let mut admin = server.client();
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "client-query-buffer-limit", "1mb"]),
        Frame::ok()
    );
    let mut client = server.client();
    assert_eq!(client.cmd(&["MULTI"]), Frame::ok());
    let value = "x".repeat(100_000);
    let mut closed = false;
    for _ in 0..30 {
        client.send_raw(&RawClient::encode(&[b"SET", b"k", value.as_bytes()]));
        if client.read_reply_bytes().is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "queuing past the limit closes the client");
    assert_eq!(admin.cmd(&["GET", "k"]), Frame::Null);
}
