//! A three-node cluster started with `autocache dev-cluster`, driven by real cluster clients:
//! redirections, redis-cli -c, redis-py's RedisCluster, redis-benchmark --cluster, leader
//! failure, a node catching up after a restart (from the log and from a snapshot), and gossip
//! marking a killed node failed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::DevCluster;
use common::{bulk, manifest_dir, redis_cli, run_python_client, RawClient};
use resp::Frame;

/// The slot ranges node `port` serves, from its own CLUSTER NODES line.
fn my_slots(port: u16) -> Vec<(u16, u16)> {
    let nodes = redis_cli(port, &["cluster", "nodes"]);
    let mine = nodes
        .lines()
        .find(|line| line.contains("myself"))
        .expect("a myself line");
    mine.split(' ')
        .skip(8)
        .map(|range| match range.split_once('-') {
            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
            None => (range.parse().unwrap(), range.parse().unwrap()),
        })
        .collect()
}

/// A key whose slot lies in `ranges`.
fn key_in(port: u16, ranges: &[(u16, u16)], prefix: &str) -> (String, u16) {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find_map(|key| {
            let slot: u16 = redis_cli(port, &["cluster", "keyslot", &key])
                .parse()
                .ok()?;
            ranges
                .iter()
                .any(|&(a, b)| (a..=b).contains(&slot))
                .then_some((key, slot))
        })
        .unwrap()
}

/// Waits until node `port` itself serves `key` (leads its group again after a restart: the
/// balancer hands the group back once the node caught up).
fn wait_until_serves(port: u16, key: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let reply = RawClient::connect(port).cmd(&["GET", key]);
        match &reply {
            Frame::Error(text) if text.starts_with("MOVED") || text.starts_with("CLUSTERDOWN") => {
                assert!(
                    Instant::now() < deadline,
                    "node on port {port} does not serve {key} again: {text}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            _ => return,
        }
    }
}

#[test]
fn topology_and_redirections() {
    let cluster = DevCluster::start(3, &[]);
    let [p1, p2, p3] = [cluster.port(1), cluster.port(2), cluster.port(3)];
    // Every node leads its share of the 16 groups, and every node agrees on who leads what.
    let nodes = redis_cli(p1, &["cluster", "nodes"]);
    let masters: Vec<&str> = nodes.lines().collect();
    assert_eq!(masters.len(), 3, "{nodes}");
    let mut covered = 0;
    for line in &masters {
        assert!(line.contains("master - 0 0 0 connected "), "{line}");
        let ranges: Vec<&str> = line.split(' ').skip(8).collect();
        assert!(ranges.len() >= 5, "leaders are not balanced: {nodes}");
        covered += ranges
            .iter()
            .map(|r| {
                let (a, b) = r.split_once('-').unwrap();
                b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1
            })
            .sum::<usize>();
    }
    assert_eq!(covered, 16384);
    assert!(redis_cli(p2, &["cluster", "info"]).starts_with("cluster_state:ok"));
    // A node answers MOVED for a slot another node leads, naming that node.
    let (key, slot) = key_in(p1, &my_slots(p2), "moved:");
    let reply = RawClient::connect(p1).raw(&[b"SET", key.as_bytes(), b"v"]);
    assert_eq!(
        common::show(&reply),
        format!("-MOVED {slot} 127.0.0.1:{p2}\\r\\n")
    );
    // redis-cli -c follows it, from every node; reads too.
    for port in [p1, p2, p3] {
        assert_eq!(
            redis_cli(port, &["-c", "set", &key, &port.to_string()]),
            "OK"
        );
        assert_eq!(redis_cli(port, &["-c", "get", &key]), port.to_string());
    }
    assert_eq!(redis_cli(p2, &["get", &key]), p3.to_string());
    // A transaction on a group led elsewhere is redirected before anything applies.
    let mut client = RawClient::connect(p1);
    assert_eq!(client.cmd(&["MULTI"]), Frame::simple("OK"));
    assert_eq!(client.cmd(&["INCR", &key]), Frame::simple("QUEUED"));
    match client.cmd(&["EXEC"]) {
        Frame::Error(text) => assert!(text.starts_with(&format!("MOVED {slot} ")), "{text}"),
        other => panic!("EXEC on a follower: {other:?}"),
    }
    assert_eq!(
        RawClient::connect(p2).cmd(&["GET", &key]),
        bulk(&p3.to_string())
    );
    // A read of keys led by two different nodes cannot be redirected to one of them.
    let (other, _) = key_in(p1, &my_slots(p3), "other:");
    let reply = RawClient::connect(p1).raw(&[b"MGET", key.as_bytes(), other.as_bytes()]);
    assert_eq!(
        common::show(&reply),
        "-CROSSSLOT Keys in request don't hash to the same slot\\r\\n"
    );
    // Reads of keys in groups this node leads are served.
    let (mine, _) = key_in(p1, &my_slots(p1), "mine:");
    assert_eq!(redis_cli(p1, &["set", &mine, "m"]), "OK");
    assert_eq!(
        RawClient::connect(p1).cmd(&["MGET", &mine, &mine]),
        Frame::Array(vec![bulk("m"), bulk("m")])
    );
}

#[test]
fn redis_py_and_redis_benchmark_use_the_cluster() {
    let cluster = DevCluster::start(3, &[]);
    run_python_client("redis_py_multi.py", cluster.port(2), "multi-node: ok");
    let out = Command::new("redis-benchmark")
        .args(["--cluster", "-p", &cluster.port(1).to_string()])
        .args(["-t", "set,get", "-n", "4000", "-c", "20", "-q"])
        .output()
        .expect("run redis-benchmark (scripts/setup.sh installs redis-tools)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Cluster has 3 master nodes"), "{stdout}");
    for test in ["SET", "GET"] {
        let line = stdout
            .split(['\r', '\n'])
            .rfind(|line| {
                line.starts_with(&format!("{test}: ")) && line.contains("requests per second")
            })
            .unwrap_or_else(|| panic!("no {test} result: {stdout}"));
        let rps: f64 = line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{line}"));
        assert!(rps > 100.0, "{line}");
    }
    assert!(!stdout.contains("Error"), "{stdout}");
}

#[test]
fn leader_failure_loses_nothing_and_the_node_catches_up() {
    let mut cluster = DevCluster::start(3, &[]);
    let p1 = cluster.port(1);
    let node1_slots = my_slots(p1);
    let (key, _) = key_in(p1, &node1_slots, "failover:");
    // Acknowledged writes to groups on every node, including node 1's.
    for i in 0..200 {
        let (reply, _) = cluster.cmd_following(
            2,
            &["SET", &format!("k{i}"), &i.to_string()],
            Duration::from_secs(5),
        );
        assert_eq!(reply, Frame::simple("OK"));
    }
    assert_eq!(redis_cli(p1, &["set", &key, "before"]), "OK");

    cluster.kill(1);
    // The key's group elects a new leader among the survivors: the next command is
    // redirected there and succeeds within a few seconds.
    let (reply, took) = cluster.cmd_following(2, &["SET", &key, "after"], Duration::from_secs(15));
    assert_eq!(reply, Frame::simple("OK"));
    eprintln!("first write to the failed leader's group succeeded after {took:?}");
    assert!(took < Duration::from_secs(8), "failover took {took:?}");
    for i in 0..200 {
        let (reply, _) =
            cluster.cmd_following(3, &["GET", &format!("k{i}")], Duration::from_secs(15));
        assert_eq!(reply, bulk(&i.to_string()), "k{i} after the failure");
    }
    // Writes made while node 1 was down reach it when it comes back: it catches up from the
    // leader's log and leads its groups again.
    for i in 200..300 {
        let (reply, _) = cluster.cmd_following(
            3,
            &["SET", &format!("k{i}"), &i.to_string()],
            Duration::from_secs(15),
        );
        assert_eq!(reply, Frame::simple("OK"));
    }
    cluster.restart(1);
    wait_until_serves(p1, &key, Duration::from_secs(30));
    assert_eq!(redis_cli(p1, &["get", &key]), "after");
    for i in 0..300 {
        let key = format!("k{i}");
        if let Ok(slot) = redis_cli(p1, &["cluster", "keyslot", &key]).parse::<u16>() {
            if node1_slots.iter().any(|&(a, b)| (a..=b).contains(&slot)) {
                // Leadership returns one group at a time, each once node 1 caught up.
                wait_until_serves(p1, &key, Duration::from_secs(30));
                assert_eq!(
                    redis_cli(p1, &["get", &key]),
                    i.to_string(),
                    "{key} on node 1"
                );
            }
        }
    }
}

#[test]
fn a_node_behind_the_purged_log_catches_up_from_a_snapshot() {
    // Three groups, snapshots every 100 entries: a follower that misses more than the 1000
    // entries kept after a snapshot can only catch up by installing one.
    let mut cluster = DevCluster::start(3, &["--groups", "3", "--snapshot-every", "100"]);
    let p3 = cluster.port(3);
    let node3_slots = my_slots(p3);
    cluster.kill(3);
    // Node 3's group (slots 10923-16383) moves to a survivor; write far past what it keeps.
    let (tag, _) = key_in(cluster.port(1), &node3_slots, "tag");
    let (reply, _) = cluster.cmd_following(
        1,
        &["SET", &format!("{{{tag}}}:probe"), "x"],
        Duration::from_secs(15),
    );
    assert_eq!(reply, Frame::simple("OK"));
    let leader = (1..=2u16)
        .map(|id| cluster.port(id))
        .find(|&port| redis_cli(port, &["set", &format!("{{{tag}}}:probe"), "y"]) == "OK")
        .expect("a survivor leads node 3's group");
    let mut client = RawClient::connect(leader);
    let mut pipeline = Vec::new();
    for i in 0..3000 {
        pipeline.extend(RawClient::encode(&[
            b"SET",
            format!("{{{tag}}}:{i}").as_bytes(),
            i.to_string().as_bytes(),
        ]));
    }
    client.send_raw(&pipeline);
    for _ in 0..3000 {
        assert_eq!(
            common::show(&client.read_reply_bytes().unwrap()),
            "+OK\\r\\n"
        );
    }
    cluster.restart(3);
    wait_until_serves(p3, &format!("{{{tag}}}:probe"), Duration::from_secs(60));
    let mut client = RawClient::connect(p3);
    for i in (0..3000).step_by(97) {
        assert_eq!(
            client.cmd(&["GET", &format!("{{{tag}}}:{i}")]),
            bulk(&i.to_string())
        );
    }
    assert_eq!(client.cmd(&["GET", &format!("{{{tag}}}:probe")]), bulk("y"));
    let log = std::fs::read_to_string(cluster.restart_log(3)).unwrap();
    assert!(
        log.contains("installed a snapshot from the leader"),
        "node 3 caught up without a snapshot:\n{log}"
    );
}

#[test]
fn redis_py_keeps_writing_through_a_node_failure() {
    let mut cluster = DevCluster::start(3, &[]);
    let client = redis_py_checker(cluster.port(2), 12, None);
    std::thread::sleep(Duration::from_secs(3));
    cluster.kill(1);
    assert_redis_py_checker_ok(client);
}

#[test]
fn redis_rs_cluster_client_works() {
    use redis::Commands;
    let cluster = DevCluster::start(3, &[]);
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{}/", cluster.port(3))])
            .unwrap();
    let mut connection = client.get_connection().unwrap();
    for i in 0..300 {
        let () = connection.set(format!("rs:{i}"), i).unwrap();
    }
    for i in 0..300 {
        let value: i64 = connection.get(format!("rs:{i}")).unwrap();
        assert_eq!(value, i);
    }
    let () = connection
        .mset(&[("{rs}:a", "1"), ("{rs}:b", "2")])
        .unwrap();
    let values: Vec<String> = connection.mget(&["{rs}:a", "{rs}:b"]).unwrap();
    assert_eq!(values, ["1", "2"]);
    let total: i64 = connection.incr("{rs}:a", 41).unwrap();
    assert_eq!(total, 42);
    // Each node holds only the keys of the groups it leads; together, all of them.
    let held: usize = cluster
        .ports()
        .iter()
        .map(|&port| redis_cli(port, &["dbsize"]).parse::<usize>().unwrap())
        .sum();
    assert_eq!(
        held, 302,
        "DBSIZE counts the keys of the groups a node leads"
    );
}

/// GET `path` from `port` over plain HTTP/1.1; returns (status line, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the series `name` (with its labels, as printed) in a scrape.
fn series(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_endpoint_reports_every_group() {
    let cluster = DevCluster::start(3, &[]);
    let metrics = cluster.metrics_port(1);
    let (status, _) = http_get(metrics, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, before) = http_get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Node 1 is the preferred leader of groups 0, 3, 6, ...: it leads them, follows the rest.
    for group in 0..16 {
        let leading = if group % 3 == 0 { 1.0 } else { 0.0 };
        assert_eq!(
            series(
                &before,
                &format!("autocache_raft_is_leader{{group=\"{group}\"}}")
            ),
            Some(leading),
            "group {group}:\n{before}"
        );
        assert_eq!(
            series(
                &before,
                &format!("autocache_raft_has_leader{{group=\"{group}\"}}")
            ),
            Some(1.0)
        );
    }
    assert!(series(&before, "autocache_raft_term{group=\"0\"}").unwrap() >= 1.0);
    assert!(
        series(
            &before,
            "autocache_raft_replication_lag_entries{group=\"0\",peer=\"2\"}"
        )
        .is_some(),
        "{before}"
    );
    // A write to group 0 is counted as committed and moves its indexes on every replica.
    let (key, _) = key_in(cluster.port(1), &[(0, 1023)], "metrics:");
    assert_eq!(redis_cli(cluster.port(1), &["set", &key, "v"]), "OK");
    let (_, after) = http_get(metrics, "/metrics");
    let committed = "autocache_raft_proposals_total{group=\"0\",outcome=\"committed\"}";
    assert!(
        series(&after, committed).unwrap_or(0.0) >= series(&before, committed).unwrap_or(0.0) + 1.0
    );
    let applied = "autocache_raft_applied_index{group=\"0\"}";
    assert!(series(&after, applied) > series(&before, applied));
    assert!(series(&after, "autocache_raft_log_fsync_seconds_count").unwrap() > 0.0);
    assert!(series(&after, "autocache_connected_clients").is_some());
    let (_, follower) = http_get(cluster.metrics_port(2), "/metrics");
    assert!(series(&follower, applied).unwrap() >= series(&before, applied).unwrap());
}

#[test]
fn redis_rs_keeps_writing_through_a_node_failure() {
    use redis::Commands;
    let mut cluster = DevCluster::start(3, &[]);
    let client = redis::cluster::ClusterClientBuilder::new(vec![format!(
        "redis://127.0.0.1:{}/",
        cluster.port(2)
    )])
    .retries(20)
    .min_retry_wait(50)
    .max_retry_wait(500)
    .connection_timeout(Duration::from_secs(1))
    .response_timeout(Duration::from_secs(12))
    .build()
    .unwrap();
    let writer = std::thread::spawn(move || {
        let keys: Vec<String> = (0..40).map(|i| format!("rs-failover:{i}")).collect();
        let mut acked = vec![0u64; keys.len()];
        let mut last_acked = vec![Instant::now(); keys.len()];
        let mut attempted = vec![0u64; keys.len()];
        // What each key's last failed call answered, and when (to tell a stuck group from a
        // stuck client route when the assertion below fails).
        let mut last_error: Vec<Option<(Instant, String)>> = vec![None; keys.len()];
        let mut connection = client.get_connection().unwrap();
        let (mut errors, mut longest_gap) = (0, Duration::ZERO);
        let mut slowest_call = (Duration::ZERO, 0);
        let mut last_success = Instant::now();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(12);
        let mut n = 0;
        while Instant::now() < deadline {
            let i = n % keys.len();
            attempted[i] += 1;
            let call = Instant::now();
            let result = connection.set::<_, _, ()>(&keys[i], attempted[i]);
            slowest_call = slowest_call.max((call.elapsed(), i));
            match result {
                Ok(()) => {
                    acked[i] = attempted[i];
                    last_acked[i] = Instant::now();
                    longest_gap = longest_gap.max(last_success.elapsed());
                    last_success = Instant::now();
                }
                Err(error) => {
                    errors += 1;
                    last_error[i] = Some((Instant::now(), error.to_string()));
                    std::thread::sleep(Duration::from_millis(50));
                    if let Ok(fresh) = client.get_connection() {
                        connection = fresh;
                    }
                }
            }
            n += 1;
        }
        // Every key is written again after the failure: its group has a leader again.
        for (i, key) in keys.iter().enumerate() {
            let since = deadline.saturating_duration_since(last_acked[i]);
            assert!(
                since < Duration::from_secs(4),
                "{key} was last written {since:?} before the end; its last error: {:?}; \
                 the slowest call took {:?} (key {}); {} attempts in all, {errors} errors",
                last_error[i]
                    .as_ref()
                    .map(|(at, error)| (at.duration_since(started), error)),
                slowest_call.0,
                keys[slowest_call.1],
                n,
            );
        }
        (keys, acked, attempted, errors, longest_gap, client)
    });
    std::thread::sleep(Duration::from_secs(3));
    cluster.kill(1);
    let (keys, acked, attempted, errors, longest_gap, client) = writer.join().unwrap();
    eprintln!("redis-rs through a node kill: {errors} errors, longest gap {longest_gap:?}");
    assert!(
        longest_gap < Duration::from_secs(10),
        "no write for {longest_gap:?}"
    );
    let mut connection = client.get_connection().unwrap();
    for (i, key) in keys.iter().enumerate() {
        let value: u64 = connection.get(key).unwrap();
        assert!(
            acked[i] <= value && value <= attempted[i],
            "{key}: acknowledged {} read {value} attempted {}",
            acked[i],
            attempted[i]
        );
    }
}

#[test]
fn a_graceful_stop_hands_leadership_over_first() {
    let mut cluster = DevCluster::start(3, &[]);
    let p1 = cluster.port(1);
    let (key, _) = key_in(p1, &my_slots(p1), "handoff:");
    assert_eq!(redis_cli(p1, &["set", &key, "before"]), "OK");
    cluster.stop(1);
    // Node 1 handed its groups to followers before exiting: no election timeout to sit out.
    let (reply, took) = cluster.cmd_following(2, &["SET", &key, "after"], Duration::from_secs(15));
    assert_eq!(reply, Frame::simple("OK"));
    eprintln!("first write after a graceful stop succeeded after {took:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let (reply, _) = cluster.cmd_following(3, &["GET", &key], Duration::from_secs(5));
    assert_eq!(reply, bulk("after"));
}

#[test]
fn groups_left_idle_after_a_graceful_stop_take_writes_at_once() {
    let mut cluster = DevCluster::start(3, &[]);
    // Node 1 is the preferred leader of every third group (16 groups of 1024 slots): the
    // others' balancers hand these back to it as long as it acknowledges them, so up to its
    // very last heartbeat.
    let p1 = cluster.port(1);
    let keys: Vec<String> = (0..16u16)
        .step_by(3)
        .map(|group| key_in(p1, &[(group * 1024, group * 1024 + 1023)], "idle:").0)
        .collect();
    std::thread::sleep(Duration::from_secs(3)); // leadership settles where placement puts it
    cluster.stop(1);
    // No writes for a while, as idle groups see none: a group handed back to node 1 just as
    // it stopped must not wait out an election (about 3 s) for its next write.
    std::thread::sleep(Duration::from_millis(1500));
    for key in &keys {
        let (reply, took) = cluster.cmd_following(2, &["SET", key, "x"], Duration::from_secs(15));
        assert_eq!(reply, Frame::simple("OK"));
        assert!(
            took < Duration::from_secs(1),
            "{key}: the first write took {took:?}"
        );
    }
}

#[test]
fn a_whole_cluster_stopped_with_ctrl_c_stops_without_waiting_out_transfers() {
    let mut cluster = DevCluster::start(3, &[]);
    std::thread::sleep(Duration::from_secs(3)); // leadership settles where placement puts it
    let took = cluster.interrupt();
    eprintln!("dev-cluster stopped {took:?} after Ctrl-C");
    // Every node hands its groups to peers that are stopping too and refuse them: a refusal
    // must end that hand-off at once. Waited out (half a second per transfer, two per
    // group), the whole cluster took ~1.2 s to stop and warned of every transfer.
    for id in 1..=3 {
        let log = cluster.log(id);
        assert!(
            !log.contains("not taken"),
            "node {id} waited out a transfer to a stopping peer:\n{log}"
        );
    }
    assert!(took < Duration::from_millis(800), "took {took:?}");
}

#[test]
fn publish_reaches_subscribers_on_every_node() {
    let cluster = DevCluster::start(3, &[]);
    let mut subscribers: Vec<RawClient> = [2, 3]
        .iter()
        .map(|&id| {
            let mut client = RawClient::connect(cluster.port(id));
            client.cmd(&["SUBSCRIBE", "news"]);
            client
        })
        .collect();
    // Counted where it was published (no subscriber there), delivered everywhere, in order.
    let mut publisher = RawClient::connect(cluster.port(1));
    for i in 0..20 {
        assert_eq!(
            publisher.cmd(&["PUBLISH", "news", &format!("m{i}")]),
            Frame::Integer(0)
        );
    }
    for subscriber in &mut subscribers {
        for i in 0..20 {
            let expected =
                Frame::Array(vec![bulk("message"), bulk("news"), bulk(&format!("m{i}"))]);
            let bytes = subscriber.read_reply_bytes().expect("a relayed message");
            assert_eq!(resp::value::parse(&bytes).unwrap().unwrap().0, expected);
        }
    }
}

#[test]
fn publish_reaches_subscribers_on_nodes_that_joined_later() {
    let cluster = DevCluster::start(3, &["--spare", "2"]);
    // Publishers relay to whom they know: wait until gossip told nodes 1 and 5 of all five.
    for publisher in [1, 5] {
        let started = Instant::now();
        while redis_cli(cluster.port(publisher), &["cluster", "nodes"])
            .lines()
            .count()
            < 5
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "gossip is slow"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut subscribers: Vec<(u16, RawClient)> = [1, 4, 5]
        .iter()
        .map(|&id| {
            let mut client = RawClient::connect(cluster.port(id));
            client.cmd(&["SUBSCRIBE", "news"]);
            (id, client)
        })
        .collect();
    // From a static member to the joined nodes, and from a joined node to everyone.
    let messages = [(1, "from-1"), (5, "from-5")];
    for (node, message) in messages {
        RawClient::connect(cluster.port(node)).cmd(&["PUBLISH", "news", message]);
    }
    for (id, subscriber) in &mut subscribers {
        let mut received = Vec::new();
        for _ in messages {
            let bytes = subscriber.read_reply_bytes().expect("a relayed message");
            received.push(resp::value::parse(&bytes).unwrap().unwrap().0);
        }
        received.sort_by_key(|frame| format!("{frame:?}"));
        let expected: Vec<Frame> = messages
            .iter()
            .map(|(_, m)| Frame::Array(vec![bulk("message"), bulk("news"), bulk(m)]))
            .collect();
        assert_eq!(received, expected, "node {id}");
    }
}

#[test]
fn gossip_marks_a_killed_node_failed_until_it_returns() {
    let mut cluster = DevCluster::start(3, &[]);
    let (p1, p3) = (cluster.port(1), cluster.port(3));
    let line_of_node3 = || {
        redis_cli(p1, &["cluster", "nodes"])
            .lines()
            .find(|line| line.contains(&format!(":{p3}@")))
            .map(str::to_string)
            .unwrap_or_default()
    };
    let wait_for = |what: &str, done: &dyn Fn(&str) -> bool| {
        let started = Instant::now();
        loop {
            let line = line_of_node3();
            if done(&line) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "node 3 never {what}: {line:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("showed as connected", &|line| {
        line.contains(" master ") && line.contains(" connected")
    });

    cluster.kill(3);
    let took = wait_for("showed as failed", &|line| {
        line.contains("master,fail") && line.contains(" disconnected")
    });
    eprintln!("node 3 marked failed {took:?} after it was killed");
    let shards = redis_cli(p1, &["cluster", "shards"]);
    assert!(shards.contains("failed"), "{shards}");

    cluster.restart(3);
    wait_for("came back", &|line| {
        !line.contains("fail") && line.contains(" connected")
    });
}

/// How long one `autocache admin` run may take in these tests before it fails the test: its
/// steps give up after 120 s each, so a run still going after this is stuck, and must fail
/// with what it printed rather than stall the suite.
const ADMIN_LIMIT: Duration = Duration::from_secs(300);

/// Runs `autocache admin` against node 1 of `cluster`; returns its output and duration.
fn admin(cluster: &DevCluster, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_autocache"))
        .arg("admin")
        .args(["--node", &format!("127.0.0.1:{}", cluster.port(1) + 10000)])
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run autocache admin");
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > ADMIN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "admin {args:?} still running after {ADMIN_LIMIT:?}:\n{}\n{}",
                read(&out_path),
                read(&err_path)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = read(&out_path);
    assert!(
        status.success(),
        "admin {args:?} failed:\n{stdout}\n{}",
        read(&err_path)
    );
    (stdout, started.elapsed())
}

/// The REPLICAS and LEADS columns of `autocache admin status`'s node table, by node.
fn shares(status: &str) -> Vec<(u16, usize, usize)> {
    status
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("NODE"))
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((
                fields.first()?.parse().ok()?,
                fields.get(3)?.parse().ok()?,
                fields.get(4)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Asserts that nodes `on` hold every replica and leadership, evenly (within one), and the
/// others none.
fn assert_even(status: &str, on: &[u16]) {
    let shares = shares(status);
    let held: Vec<_> = shares.iter().filter(|s| on.contains(&s.0)).collect();
    assert_eq!(held.len(), on.len(), "{status}");
    for (field, name) in [(1, "replicas"), (2, "leaders")] {
        let counts: Vec<usize> = held
            .iter()
            .map(|s| if field == 1 { s.1 } else { s.2 })
            .collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "{name} uneven over {on:?}:\n{status}");
    }
    for share in shares.iter().filter(|s| !on.contains(&s.0)) {
        assert_eq!(
            (share.1, share.2),
            (0, 0),
            "node {} kept a share:\n{status}",
            share.0
        );
    }
}

#[test]
fn the_cluster_grows_to_five_nodes_and_shrinks_back_while_clients_write() {
    let cluster = DevCluster::start(3, &["--spare", "2"]);
    // Redirects are followed by the client; any other error fails the run.
    let client = redis_py_checker(cluster.port(1), 30, Some(0));
    std::thread::sleep(Duration::from_secs(2));
    let node = |id: u16| {
        [
            "--client".to_string(),
            format!("127.0.0.1:{}", cluster.port(id)),
            "--raft".to_string(),
            format!("127.0.0.1:{}", cluster.port(id) + 10000),
        ]
    };
    // Each step, the nodes holding the slot groups, and the metadata group's voters: three
    // of four nodes, all of five; a leaving node's replica is dropped, not replaced, when
    // every other node has one.
    let steps: [(Vec<String>, &[u16], &str); 4] = [
        (
            [vec!["add-node".into(), "4".into()], node(4).to_vec()].concat(),
            &[1, 2, 3, 4],
            "1,2,3",
        ),
        (
            [vec!["add-node".into(), "5".into()], node(5).to_vec()].concat(),
            &[1, 2, 3, 4, 5],
            "1,2,3,4,5",
        ),
        (
            vec!["remove-node".into(), "5".into()],
            &[1, 2, 3, 4],
            "1,2,3,4",
        ),
        (vec!["remove-node".into(), "4".into()], &[1, 2, 3], "1,2,3"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut benchmark = None;
    for (step, (args, on, metadata_voters)) in steps.into_iter().enumerate() {
        if step == 2 {
            // redis-benchmark --cluster leaves out the nodes that own no slots when it starts,
            // and cannot follow slots onto them later: it runs while the cluster shrinks,
            // when every node it is redirected to led slots at its start.
            let started = Command::new("redis-benchmark")
                .args(["--cluster", "-p", &cluster.port(1).to_string()])
                .args([
                    "-t", "set", "-n", "10000000", "-r", "100000", "-c", "20", "-q",
                ])
                .stdout(std::fs::File::create(&out_path).unwrap())
                .stderr(std::fs::File::create(&err_path).unwrap())
                .spawn()
                .expect("run redis-benchmark (scripts/setup.sh installs redis-tools)");
            benchmark = Some(started);
            std::thread::sleep(Duration::from_secs(1));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (out, took) = admin(&cluster, &args);
        eprintln!("{} took {:.1}s", args[..2].join(" "), took.as_secs_f64());
        assert_even(&out, on);
        let metadata = out
            .lines()
            .find(|line| line.starts_with("metadata group"))
            .unwrap_or_else(|| panic!("no metadata group line:\n{out}"));
        assert!(
            metadata.contains(&format!("voters {metadata_voters},")),
            "{metadata}"
        );
        assert_placement_recorded(&cluster);
    }
    let mut benchmark = benchmark.expect("started");
    assert!(
        benchmark.try_wait().unwrap().is_none(),
        "redis-benchmark stopped early:\n{}",
        std::fs::read_to_string(&err_path).unwrap()
    );
    benchmark.kill().unwrap();
    benchmark.wait().unwrap();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    // Its progress lines, and warnings that the topology changed (after redirects): no error.
    assert!(stdout.contains("SET: rps="), "{stdout}");
    assert!(
        !stdout.contains("Error") && !stdout.contains("error"),
        "{stdout}"
    );
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("WARNING"))
        .collect();
    assert!(unexpected.is_empty(), "{stderr}");
    eprintln!(
        "redis-benchmark while shrinking: {} topology refreshes",
        stderr.matches("configuration changed").count()
    );
    assert_redis_py_checker_ok(client);
}

/// Waits (up to 10 s: leaders report changes once a second) for `admin status` to find the
/// metadata group's placement record equal to every group's membership.
fn assert_placement_recorded(cluster: &DevCluster) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = admin(cluster, &["status"]);
        let line = status
            .lines()
            .find(|line| line.starts_with("placement record:"))
            .unwrap_or_else(|| panic!("no placement record line:\n{status}"));
        if line.ends_with("every group's membership as recorded") {
            return;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn leadership_transfers_cost_redis_benchmark_no_error() {
    let cluster = DevCluster::start(3, &[]);
    // Its output goes to files: a full pipe nobody reads would stall its clients.
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut benchmark = Command::new("redis-benchmark")
        .args(["--cluster", "-p", &cluster.port(1).to_string()])
        .args(["-t", "set", "-n", "30000", "-r", "100000", "-c", "20", "-q"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run redis-benchmark (scripts/setup.sh installs redis-tools)");
    std::thread::sleep(Duration::from_secs(1));
    // Leaderships go round the three nodes (twice, or until the benchmark ends): a command that
    // reaches a leader stepping down waits for its successor and is redirected, never failed.
    let mut transfers = 0;
    'rounds: for round in 1..=2 {
        for group in 0..16u32 {
            if benchmark.try_wait().unwrap().is_some() {
                break 'rounds;
            }
            let to = ((group + round) % 3 + 1).to_string();
            admin(&cluster, &["transfer-leader", &group.to_string(), &to]);
            transfers += 1;
        }
    }
    let status = benchmark.wait().unwrap();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    // redis-benchmark warns on stderr each time a MOVED makes it re-read the topology.
    let redirects = stderr.matches("configuration changed").count();
    eprintln!("{transfers} transfers, {redirects} topology refreshes after redirects");
    assert!(
        transfers >= 16,
        "the benchmark ended before a round of transfers"
    );
    assert!(redirects > 0, "no redirect seen:\n{stderr}");
    assert!(
        status.success() && !stdout.contains("Error") && !stderr.contains("Error"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn rebalance_leaves_the_leader_of_a_hot_group_nothing_else_to_lead() {
    let cluster = DevCluster::start(3, &[]);
    // One client writes one key as fast as it can: all writes go to one group.
    let hot_key = "hot";
    let slot: usize = redis_cli(cluster.port(1), &["cluster", "keyslot", hot_key])
        .trim()
        .parse()
        .unwrap();
    let hot_group = slot * 16 / 16384;
    let writer = format!(
        "import redis, time\n\
         rc = redis.RedisCluster(host='127.0.0.1', port={}, cluster_error_retry_attempts=10)\n\
         end = time.time() + 30\n\
         i = 0\n\
         while time.time() < end:\n    rc.set('{hot_key}', i)\n    i += 1\n",
        cluster.port(1)
    );
    let mut writer = Command::new("python3")
        .args(["-c", &writer])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run python3");
    std::thread::sleep(Duration::from_secs(2));
    let (out, took) = admin(&cluster, &["rebalance", "--budget", "2", "--sample", "2"]);
    writer.kill().unwrap();
    writer.wait().unwrap();
    eprintln!("rebalance took {:.1}s:\n{out}", took.as_secs_f64());
    // The measured weights: the hot group weighs most; it alone holds memory (its one key).
    let weights: Vec<(usize, u64, f64)> = out
        .lines()
        .skip_while(|line| !line.contains("WEIGHT"))
        .skip(1)
        .map_while(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let group = fields.first()?.parse().ok()?;
            Some((
                group,
                fields.get(2)?.parse().ok()?,
                fields.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    assert_eq!(weights.len(), 16, "{out}");
    let heaviest = weights.iter().max_by(|a, b| a.2.total_cmp(&b.2)).unwrap();
    assert_eq!(heaviest.0, hot_group, "{out}");
    for (group, bytes, _) in &weights {
        assert_eq!(
            *bytes > 0,
            *group == hot_group,
            "group {group}'s memory:\n{out}"
        );
    }
    // Every other group's leadership went to the two other nodes.
    let status = &out[out.find("done in").expect("rebalance finished")..];
    let hot_leader: u16 = status
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("GROUP"))
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.first()?.parse::<usize>().ok()? == hot_group)
                .then(|| fields.get(2)?.parse().ok())?
        })
        .expect("the hot group's row");
    for (node, replicas, leads) in shares(status) {
        assert_eq!(replicas, 16, "{status}");
        if node == hot_leader {
            assert_eq!(
                leads, 1,
                "node {node} leads the hot group and more:\n{status}"
            );
        } else {
            assert!(
                (7..=8).contains(&leads),
                "node {node} leads {leads}:\n{status}"
            );
        }
    }
}

/// Whether `autocache admin status` shows group `group` owning `slot`.
fn status_owns(status: &str, group: usize, slot: u16) -> bool {
    status
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("GROUP"))
        .skip(1)
        .map_while(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((
                fields.first()?.parse::<usize>().ok()?,
                fields.get(1)?.to_string(),
            ))
        })
        .filter(|(g, _)| *g == group)
        .any(|(_, runs)| {
            runs.split(',').any(|run| {
                let (first, last) = run.split_once('-').unwrap_or((run, run));
                match (first.parse::<u16>(), last.parse::<u16>()) {
                    (Ok(first), Ok(last)) => (first..=last).contains(&slot),
                    _ => false,
                }
            })
        })
}

#[test]
fn slots_move_between_groups_while_redis_py_writes() {
    // Five nodes: one replicates neither group of a move, and learns of it from the slot map.
    let cluster = DevCluster::start(5, &[]);
    let client = redis_py_checker(cluster.port(1), 20, Some(0));
    std::thread::sleep(Duration::from_secs(2));
    // The slots of some of the keys it writes, each to another group; then a range, and back.
    let mut moves: Vec<(String, usize)> = (0..4)
        .map(|i| {
            let slot: usize = redis_cli(
                cluster.port(1),
                &["cluster", "keyslot", &format!("failover:{i}")],
            )
            .trim()
            .parse()
            .unwrap();
            // The next group: its leader and one of its voters differ from the slot's group's.
            let group = slot * 16 / 16384;
            (slot.to_string(), if group == 15 { 14 } else { group + 1 })
        })
        .collect();
    moves.push(("0-299".into(), 7));
    moves.push(("0-299".into(), 0));
    for (slots, group) in &moves {
        let (out, took) = admin(&cluster, &["move-slots", slots, &group.to_string()]);
        eprintln!(
            "move-slots {slots} {group} took {:.2}s: {}",
            took.as_secs_f64(),
            out.lines()
                .find(|l| l.contains("moved to group"))
                .unwrap_or("")
        );
        let first: u16 = slots.split('-').next().unwrap().parse().unwrap();
        assert!(status_owns(&out, *group, first), "{out}");
    }
    // Back-to-back moves of the keys' slots, ending where the list above left them: every
    // node's routes must keep up with steps applied by several groups' logs in any order.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut round = 0;
    while Instant::now() < deadline {
        for (i, (slot, home)) in moves[..4].iter().enumerate() {
            let group = (home + 1 + (round + i) % 3) % 16;
            let (out, _) = admin(&cluster, &["move-slots", slot, &group.to_string()]);
            assert!(status_owns(&out, group, slot.parse().unwrap()), "{out}");
        }
        round += 1;
    }
    for (slot, group) in &moves[..4] {
        let (out, _) = admin(&cluster, &["move-slots", slot, &group.to_string()]);
        assert!(status_owns(&out, *group, slot.parse().unwrap()), "{out}");
    }
    eprintln!("{round} rounds of back-to-back moves");
    assert_redis_py_checker_ok(client);
    // Every node's CLUSTER SLOTS names the moved slot's new group's leader, those that
    // replicate neither group too (from the slot map, spread by gossip).
    let (slot, group) = (&moves[0].0, moves[0].1);
    let slot: i64 = slot.parse().unwrap();
    let (status, _) = admin(&cluster, &["status"]);
    assert!(status.contains("slot map epoch"), "{status}");
    let row = |g: usize| -> (u16, Vec<u16>) {
        status
            .lines()
            .skip_while(|line| !line.trim_start().starts_with("GROUP"))
            .skip(1)
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.first()?.parse::<usize>().ok()? != g {
                    return None;
                }
                let voters = fields.get(4)?.split(',').filter_map(|v| v.parse().ok());
                Some((fields.get(2)?.parse().ok()?, voters.collect()))
            })
            .expect("the group's row")
    };
    let (leader, voters) = row(group);
    let source = slot as usize * 16 / 16384;
    let (source_leader, source_voters) = row(source);
    // Otherwise routing by the old group would look right too.
    assert_ne!(leader, source_leader, "{status}");
    let outsider = (1..=5u16)
        .find(|n| !voters.contains(n) && !source_voters.contains(n))
        .expect("a node replicating neither group");
    let started = Instant::now();
    loop {
        let port = cluster_slots_port(cluster.port(outsider), slot);
        if port == Some(cluster.port(leader) as i64) {
            eprintln!(
                "node {outsider} routes slot {slot} to group {group} after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "node {outsider} still routes slot {slot} to port {port:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The client port CLUSTER SLOTS on the node at `port` names for `slot`.
fn cluster_slots_port(port: u16, slot: i64) -> Option<i64> {
    let Frame::Array(ranges) = RawClient::connect(port).cmd(&["CLUSTER", "SLOTS"]) else {
        panic!("CLUSTER SLOTS is not an array");
    };
    ranges.iter().find_map(|range| match range {
        Frame::Array(fields) => match (&fields[0], &fields[1], &fields[2]) {
            (Frame::Integer(first), Frame::Integer(last), Frame::Array(master))
                if (*first..=*last).contains(&slot) =>
            {
                match master.get(1) {
                    Some(Frame::Integer(port)) => Some(*port),
                    _ => None,
                }
            }
            _ => None,
        },
        _ => None,
    })
}

/// Starts `tests/clients/redis_py_failover.py` against the node at `port` for `seconds`,
/// allowing `max_errors` client errors (None: any number; redirects are always followed).
fn redis_py_checker(port: u16, seconds: u32, max_errors: Option<u32>) -> std::process::Child {
    let script = format!("{}/tests/clients/redis_py_failover.py", manifest_dir());
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .arg(port.to_string())
        .arg(seconds.to_string());
    if let Some(max_errors) = max_errors {
        command.arg(max_errors.to_string());
    }
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3")
}

/// Waits for the checker: it must have lost no acknowledged write and stayed within its
/// error budget.
fn assert_redis_py_checker_ok(client: std::process::Child) {
    let out = client.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("failover: ok"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
}

/// The reply of `args` sent to the node at `port`, following MOVED redirects.
fn following_moved(port: u16, args: &[&str]) -> Frame {
    let mut port = port;
    for _ in 0..5 {
        match RawClient::connect(port).cmd(args) {
            Frame::Error(error) if error.starts_with("MOVED") => {
                let addr = error
                    .split_whitespace()
                    .nth(2)
                    .expect("MOVED slot host:port");
                port = addr.rsplit(':').next().unwrap().parse().unwrap();
            }
            reply => return reply,
        }
    }
    panic!("redirected too often");
}

/// SETs `key` to "kept" through node 1 (following MOVED); returns its slot.
fn set_kept(cluster: &DevCluster, key: &str) -> u16 {
    assert_eq!(
        following_moved(cluster.port(1), &["SET", key, "kept"]),
        Frame::Simple("OK".into())
    );
    redis_cli(cluster.port(1), &["cluster", "keyslot", key])
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_slot_move_abandoned_after_release_is_finished_by_the_cluster() {
    let cluster = DevCluster::start(3, &[]);
    let key = "abandoned";
    let slot = set_kept(&cluster, key);
    let (group, to) = ((slot as usize * 16 / 16384) as u32, 0u32);
    let to = if group == to { 1 } else { to };
    // A coordinator that releases the slot to another group and dies.
    let leader_port = cluster_slots_port(cluster.port(1), slot as i64).expect("a leader");
    let release = raft::ReplicaCall::SlotStep {
        group,
        op: raft::SlotOp::Release {
            slots: vec![slot],
            to,
        },
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let released = runtime
        .block_on(raft::replica_call::send(
            &format!("127.0.0.1:{}", leader_port + 10000),
            release,
        ))
        .expect("released");
    assert_eq!(released, raft::ReplicaReply::Count(1));
    let started = Instant::now();
    let unserved = following_moved(cluster.port(1), &["GET", key]);
    assert!(
        matches!(&unserved, Frame::Error(e) if e.starts_with("TRYAGAIN")),
        "{unserved:?}"
    );
    // The metadata group's leader finishes the move: 30 s in flight, checked every 10 s.
    loop {
        match following_moved(cluster.port(1), &["GET", key]) {
            Frame::Bulk(value) => {
                assert_eq!(&value[..], b"kept");
                break;
            }
            Frame::Error(e) if e.starts_with("TRYAGAIN") => {}
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still unserved after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("served again after {:.1}s", started.elapsed().as_secs_f64());
    let (status, _) = admin(&cluster, &["status"]);
    assert!(status_owns(&status, to as usize, slot), "{status}");
    assert!(!status.contains("MOVING"), "{status}");
}

#[test]
fn a_command_for_a_slot_being_moved_waits_for_the_move_to_land() {
    let cluster = DevCluster::start(3, &[]);
    let key = "landing";
    let slot = set_kept(&cluster, key);
    let group = (slot as usize * 16 / 16384) as u32;
    let to = if group == 0 { 1 } else { 0 };
    let source_port = cluster_slots_port(cluster.port(1), slot as i64).expect("a leader");
    let target_port = cluster_slots_port(cluster.port(1), to as i64 * 1024).expect("a leader");
    // A move that announced the import and released the slot, as `move-slots` begins, and
    // went no further.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let call = |port: i64, call: raft::ReplicaCall| {
        runtime
            .block_on(raft::replica_call::send(
                &format!("127.0.0.1:{}", port + 10000),
                call,
            ))
            .expect("call answered")
    };
    let step = |port: i64, group: u32, op: raft::SlotOp| {
        call(port, raft::ReplicaCall::SlotStep { group, op })
    };
    let mut empty = Vec::new();
    tiering::snapshot::dump_entries(0, std::iter::empty(), &mut empty);
    let announce = raft::SlotOp::ImportPage {
        session: 1,
        slots: vec![slot],
        starts: vec![slot],
        page: empty,
    };
    step(target_port, to, announce);
    let release = raft::SlotOp::Release {
        slots: vec![slot],
        to,
    };
    assert_eq!(
        step(source_port, group, release),
        raft::ReplicaReply::Count(1)
    );
    // The source redirects to the target, which holds the command a second, then answers
    // TRYAGAIN (rather than sending the client back to the source).
    let started = Instant::now();
    let unserved = following_moved(cluster.port(1), &["GET", key]);
    assert!(
        matches!(&unserved, Frame::Error(e) if e.starts_with("TRYAGAIN")),
        "{unserved:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // So does a transaction's EXEC.
    let mut client = RawClient::connect(target_port as u16);
    assert_eq!(client.cmd(&["MULTI"]), Frame::simple("OK"));
    assert_eq!(client.cmd(&["SET", key, "lost"]), Frame::simple("QUEUED"));
    let started = Instant::now();
    let unserved = client.cmd(&["EXEC"]);
    assert!(
        matches!(&unserved, Frame::Error(e) if e.starts_with("TRYAGAIN")),
        "{unserved:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // A command held while the move lands (its key copied, the slot adopted) is served.
    let reader = std::thread::spawn(move || following_moved(source_port as u16, &["GET", key]));
    std::thread::sleep(Duration::from_millis(200));
    let export = raft::ReplicaCall::ExportSlots {
        group,
        slots: vec![slot],
        from: (0, 0),
    };
    let raft::ReplicaReply::Page(page) = call(source_port, export) else {
        panic!("no page");
    };
    assert_eq!(page.keys, 1);
    let import = raft::SlotOp::ImportPage {
        session: 1,
        slots: page.slots,
        starts: page.starts,
        page: page.page,
    };
    step(target_port, to, import);
    let adopt = raft::SlotOp::Adopt {
        slots: vec![slot],
        session: 1,
    };
    step(target_port, to, adopt);
    assert_eq!(reader.join().unwrap(), bulk("kept"));
    // `move-slots` finishes the move (the old group drops its copy).
    let (out, _) = admin(
        &cluster,
        &["move-slots", &slot.to_string(), &to.to_string()],
    );
    assert!(status_owns(&out, to as usize, slot), "{out}");
    assert_eq!(
        following_moved(cluster.port(1), &["GET", key]),
        bulk("kept")
    );
}

#[test]
fn remove_node_drops_a_node_a_cut_off_change_left_as_learner() {
    let cluster = DevCluster::start(3, &["--spare", "1"]);
    let raft_of = |id: u16| format!("127.0.0.1:{}", cluster.port(id) + 10000);
    let client_of = |id: u16| format!("127.0.0.1:{}", cluster.port(id));
    admin(
        &cluster,
        &[
            "add-node",
            "4",
            "--client",
            &client_of(4),
            "--raft",
            &raft_of(4),
        ],
    );
    // A change cut off after demoting node 4 in one group: it is a learner there.
    let (status, _) = admin(&cluster, &["status"]);
    let (group, leader) = status
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("GROUP"))
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let voters = fields.get(4)?;
            let leader: u16 = fields.get(2)?.parse().ok()?;
            (voters.split(',').any(|v| v == "4") && leader != 4)
                .then(|| Some((fields[0].parse::<u32>().ok()?, leader)))?
        })
        .expect("a group node 4 votes in and does not lead");
    let demote = raft::ReplicaCall::Demote { group, node: 4 };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let demoted = runtime.block_on(raft::replica_call::send(&raft_of(leader), demote));
    assert_eq!(demoted, Ok(raft::ReplicaReply::Done));
    // remove-node finishes the job (it retires node 4 only once no group lists it).
    let (out, took) = admin(&cluster, &["remove-node", "4"]);
    assert!(
        out.contains(&format!("drop node 4, a learner of group {group}")),
        "{out}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}:\n{out}");
    let node4 = shares(&out).into_iter().find(|s| s.0 == 4);
    assert_eq!(node4.map(|s| (s.1, s.2)), Some((0, 0)), "{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("4 ") && l.contains("retired")),
        "{out}"
    );
}
