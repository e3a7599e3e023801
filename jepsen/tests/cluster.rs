//! The cluster under test, for real: three `autocache` processes in their own network
//! namespaces, a partition cut with iptables and healed, a node killed and restarted. Needs
//! root (CI runs as root) and the `autocache` binary built beside this test.

use std::time::{Duration, Instant};

use jepsen::cluster::{default_binary, Cluster, ClusterConfig};
use jepsen::net::Link;

/// The ips of the nodes that lead slots, as `node`'s CLUSTER NODES shows them.
fn leaders_seen_by(cluster: &Cluster, node: usize) -> redis::RedisResult<Vec<String>> {
    let client = redis::Client::open(format!("redis://{}/", cluster.client_addr(node)))?;
    let mut connection = client.get_connection_with_timeout(Duration::from_secs(1))?;
    connection.set_read_timeout(Some(Duration::from_secs(2)))?;
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut connection)?;
    Ok(nodes
        .lines()
        .filter(|line| line.split_whitespace().count() > 8)
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter_map(|addr| addr.split(':').next())
        .map(str::to_string)
        .collect())
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("{what}: {:?}", started.elapsed());
}

fn cluster_connection(cluster: &Cluster, nodes: &[usize]) -> redis::cluster::ClusterConnection {
    let urls: Vec<String> = nodes
        .iter()
        .map(|&n| format!("redis://{}/", cluster.client_addr(n)))
        .collect();
    redis::cluster::ClusterClientBuilder::new(urls)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(12))
        .build()
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn a_cluster_in_namespaces_survives_a_partition_and_a_kill() {
    let binary = default_binary()
        .expect("no autocache binary beside this test: build the workspace, or set AUTOCACHE_BIN");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(ClusterConfig {
        binary,
        dir: dir.path().to_path_buf(),
        nodes: 3,
        groups: 4,
        server_args: Vec::new(),
        faketime: false,
    })
    .unwrap();
    cluster.wait_ready(Duration::from_secs(60)).unwrap();
    let node1 = cluster.net().ip(1).to_string();
    // Every group has a leader; the balancer then hands node 1 the groups it prefers.
    wait_for(
        "node 1 leads its preferred groups",
        Duration::from_secs(30),
        || leaders_seen_by(&cluster, 2).is_ok_and(|l| l.contains(&node1)),
    );

    let mut connection = cluster_connection(&cluster, &[1, 2, 3]);
    for i in 0..20 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut connection)
            .unwrap();
    }

    // Isolate node 1: the others elect leaders for its groups.
    let isolate: Vec<Link> = [2, 3]
        .into_iter()
        .flat_map(|other| [Link { from: 1, to: other }, Link { from: other, to: 1 }])
        .collect();
    cluster.net().cut(&isolate).unwrap();
    assert_eq!(
        cluster.net().rules(1).unwrap().len(),
        2,
        "the cut is installed"
    );
    wait_for(
        "the majority leads every group",
        Duration::from_secs(30),
        || {
            cluster.is_ready(2)
                && leaders_seen_by(&cluster, 2).is_ok_and(|l| !l.is_empty() && !l.contains(&node1))
        },
    );
    let mut majority = cluster_connection(&cluster, &[2, 3]);
    for i in 0..20 {
        let value: i64 = redis::cmd("INCR")
            .arg(format!("k{i}"))
            .query(&mut majority)
            .unwrap();
        assert_eq!(value, i + 1, "k{i} after the partition");
    }
    cluster.net().heal().unwrap();
    assert!(
        cluster.net().rules(1).unwrap().is_empty(),
        "the cut is healed"
    );

    // Kill node 2; the others keep serving; it restarts from its disk.
    assert!(cluster.kill(2));
    wait_for(
        "the survivors lead every group",
        Duration::from_secs(30),
        || {
            leaders_seen_by(&cluster, 1)
                .is_ok_and(|l| !l.is_empty() && !l.contains(&cluster.net().ip(2).to_string()))
                && cluster.wait_ready(Duration::from_secs(1)).is_ok()
        },
    );
    cluster.start_node(2).unwrap();
    cluster.wait_ready(Duration::from_secs(60)).unwrap();
    let mut connection = cluster_connection(&cluster, &[1, 2, 3]);
    for i in 0..20 {
        let value = read_through_leader_changes(&mut connection, &format!("k{i}"));
        assert_eq!(value, i + 1, "k{i} after the kill");
    }
}

/// GET, retried while the key's group changes leader (the restarted node takes its groups
/// back): a redirect or CLUSTERDOWN says the read was not served, so retrying is safe.
fn read_through_leader_changes(
    connection: &mut redis::cluster::ClusterConnection,
    key: &str,
) -> i64 {
    let started = Instant::now();
    loop {
        match redis::cmd("GET").arg(key).query(connection) {
            Ok(value) => return value,
            Err(e)
                if started.elapsed() < Duration::from_secs(10)
                    && matches!(e.code(), Some("MOVED" | "CLUSTERDOWN" | "TRYAGAIN")) =>
            {
                println!("GET {key}: {e}, retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("GET {key}: {e}"),
        }
    }
}
