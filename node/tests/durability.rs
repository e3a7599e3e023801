//! Every acknowledged write survives `kill -9`: the server acknowledges a write only once its
//! raft log entry is fsynced, and a restart rebuilds the data from the snapshot and the log.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    autocache_command, bulk, free_port, start_autocache_at, start_autocache_with, temp_dir,
    wait_for_port, RawClient,
};
use resp::Frame;

/// Writers running while the server is killed: each records the writes it saw acknowledged.
#[test]
fn acknowledged_writes_survive_kill_9() {
    // A low snapshot threshold, so the restart loads a snapshot and replays a log tail.
    let mut server = start_autocache_with(&["--snapshot-every", "200"]);
    let port = server.port;
    // Each writer writes until the server dies under it.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            thread::spawn(move || {
                let mut client = RawClient::connect(port);
                let mut acked = Vec::new();
                for i in 0u64.. {
                    let key = format!("w{w}:k{i}");
                    let value = format!("v{i}");
                    match client.try_cmd(&["SET", &key, &value]) {
                        Some(Frame::Simple(ok)) if &ok[..] == "OK" => acked.push(i),
                        Some(other) => panic!("SET {key} answered {other:?}"),
                        None => break,
                    }
                    if i % 7 == 0 {
                        match client.try_cmd(&["INCR", &format!("w{w}:counter")]) {
                            Some(Frame::Integer(n)) => assert_eq!(n as usize, i as usize / 7 + 1),
                            Some(other) => panic!("INCR answered {other:?}"),
                            None => break,
                        }
                    }
                }
                acked
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    server.kill_hard();
    let acked: Vec<Vec<u64>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(
        total > 400,
        "writers made too little progress to test: {total} writes"
    );

    server.restart();
    let mut client = server.client();
    for (w, acked) in acked.iter().enumerate() {
        for &i in acked {
            let key = format!("w{w}:k{i}");
            assert_eq!(
                client.cmd(&["GET", &key]),
                bulk(&format!("v{i}")),
                "acknowledged write of {key} lost ({} of {total} acknowledged)",
                acked.len()
            );
        }
        let last = *acked.last().unwrap();
        let counter = client.cmd(&["GET", &format!("w{w}:counter")]);
        let Frame::Bulk(counter) = counter else {
            panic!("counter of writer {w} lost: {counter:?}")
        };
        let counter: u64 = std::str::from_utf8(&counter).unwrap().parse().unwrap();
        // Every INCR acknowledged before the last acknowledged SET is there.
        assert!(
            counter >= last / 7 + (last % 7 != 0) as u64,
            "counter {counter} after {last}"
        );
    }
    // The restarted server accepts writes again.
    assert_eq!(
        client.cmd(&["SET", "after", "restart"]),
        Frame::Simple("OK".into())
    );
}

/// A clean restart keeps every kind of value, TTLs and transaction results.
#[test]
fn data_of_every_type_survives_restart() {
    let mut server = start_autocache_with(&["--snapshot-every", "5"]);
    let mut c = server.client();
    let setup: &[&[&str]] = &[
        &["SET", "s", "hello"],
        &["RPUSH", "l", "a", "b", "c"],
        &["HSET", "h", "f1", "1", "f2", "2"],
        &["SADD", "set", "x", "y"],
        &["ZADD", "z", "1", "one", "2", "two"],
        &["SET", "ttl", "v", "EX", "1000"],
        &["SET", "gone", "v", "PX", "1"],
        &["SETBIT", "bits", "7", "1"],
        &["INCRBYFLOAT", "f", "1.5"],
    ];
    for command in setup {
        assert!(!matches!(c.cmd(command), Frame::Error(_)), "{command:?}");
    }
    assert_eq!(c.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(c.cmd(&["INCR", "n"]), Frame::Simple("QUEUED".into()));
    assert_eq!(c.cmd(&["INCR", "n"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Array(vec![Frame::Integer(1), Frame::Integer(2)])
    );
    thread::sleep(Duration::from_millis(20));
    server.kill_hard();
    server.restart();
    let mut c = server.client();
    assert_eq!(c.cmd(&["GET", "s"]), bulk("hello"));
    assert_eq!(
        c.cmd(&["LRANGE", "l", "0", "-1"]),
        Frame::Array(vec![bulk("a"), bulk("b"), bulk("c")])
    );
    assert_eq!(c.cmd(&["HGET", "h", "f2"]), bulk("2"));
    assert_eq!(c.cmd(&["SCARD", "set"]), Frame::Integer(2));
    assert_eq!(c.cmd(&["ZSCORE", "z", "two"]), bulk("2"));
    let Frame::Integer(ttl) = c.cmd(&["TTL", "ttl"]) else {
        panic!("TTL is not an integer")
    };
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    assert_eq!(c.cmd(&["EXISTS", "gone"]), Frame::Integer(0));
    assert_eq!(c.cmd(&["GETBIT", "bits", "7"]), Frame::Integer(1));
    assert_eq!(c.cmd(&["GET", "f"]), bulk("1.5"));
    assert_eq!(c.cmd(&["GET", "n"]), bulk("2"));
}

/// A tmpfs of a given size, unmounted when dropped: a disk that fills. Mounting needs root, as
/// the correctness harness's network namespaces do.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let disk = SmallDisk {
            dir: temp_dir("disk"),
        };
        disk.mount_with(&format!("size={size}"));
        disk
    }

    fn grow(&self, size: &str) {
        self.mount_with(&format!("remount,size={size}"));
    }

    fn mount_with(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&self.dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -o {options} failed (it needs root)"
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A full disk stops the server, with an error status, rather than leaving it up with groups
/// that take no write, even when its log goes to that disk too; every write acknowledged
/// before is there once it restarts with room.
#[test]
fn a_full_disk_stops_the_server_and_loses_no_acknowledged_write() {
    let disk = SmallDisk::mount("24m");
    let data = disk.dir.join("data");
    let port = free_port();
    let log = std::fs::File::create(disk.dir.join("autocache.log")).unwrap();
    let mut server = autocache_command(port, &data)
        // The server's own default, as a user runs it.
        .env("RUST_LOG", "info,openraft=error")
        .stderr(log)
        .spawn()
        .expect("start autocache");
    wait_for_port(port, &mut server);
    let mut client = RawClient::connect(port);
    let value = "v".repeat(64 << 10);
    let mut acked = Vec::new();
    for i in 0u32.. {
        assert!(i < 10_000, "the disk never filled");
        match client.try_cmd(&["SET", &format!("k{i}"), &value]) {
            Some(Frame::Simple(ok)) if &ok[..] == "OK" => acked.push(i),
            // Not written, or written but not known to be: either may be lost.
            Some(reply)
                if reply
                    .error_text()
                    .is_some_and(|e| e.starts_with("UNCERTAIN")) =>
            {
                break
            }
            None => break,
            Some(other) => panic!("SET k{i} answered {other:?}"),
        }
    }
    assert!(acked.len() > 100, "only {} writes fitted", acked.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            panic!("the server did not stop by itself");
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "exited with {status}");

    disk.grow("128m");
    let server = start_autocache_at(data, &[]);
    let mut client = server.client();
    for i in &acked {
        assert_eq!(client.cmd(&["GET", &format!("k{i}")]), bulk(&value), "k{i}");
    }
    assert_eq!(client.cmd(&["SET", "after", "1"]), Frame::ok());
}

/// A log that cannot be written (its disk full: `/dev/full` fails every write) loses log lines,
/// not the server: it starts, serves and stops as usual.
#[test]
fn a_full_log_disk_does_not_stop_the_server() {
    let port = free_port();
    let data = temp_dir("full-log");
    let mut server = autocache_command(port, &data)
        .env("RUST_LOG", "debug")
        .stderr(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .spawn()
        .expect("start autocache");
    wait_for_port(port, &mut server);
    let mut client = RawClient::connect(port);
    for i in 0..100 {
        assert_eq!(client.cmd(&["SET", &format!("k{i}"), "v"]), Frame::ok());
    }
    assert_eq!(client.cmd(&["DBSIZE"]), Frame::Integer(100));
    let _ = client.try_cmd(&["SHUTDOWN"]);
    let status = server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
    assert!(status.success(), "exited with {status}");
}
