//! Three nodes in one process, talking gRPC over loopback through a link filter that cuts,
//! slows and drops: elections, failover of a partitioned leader, a delayed follower, lossy
//! links, a follower that was cut off long enough to need a snapshot, and a leader stopped and
//! restarted from its disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use raft::link_filter::LinkFilter;
use raft::{AccessError, Groups, GroupsConfig, NodeAddr, NodeId, Op, Placement, Request, Response};
use resp::{CommandTable, Frame};
use tiering::{Caller, Db, ExecCtx};

struct Node {
    id: NodeId,
    db: Arc<Db>,
    groups: Groups,
}

struct Cluster {
    /// None while stopped.
    nodes: Vec<Option<Node>>,
    filter: LinkFilter,
    placement: Placement,
    snapshot_every: u64,
    dir: tempfile::TempDir,
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

impl Cluster {
    /// Starts three nodes replicating one group (preferred leader: node 1).
    async fn start(snapshot_every: u64) -> Cluster {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let filter = LinkFilter::default();
        let members = (1..=3)
            .map(|id| {
                let addr = NodeAddr {
                    client: format!("127.0.0.1:{}", 6000 + id),
                    raft: free_addr(),
                };
                (id, addr)
            })
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            filter,
            placement: Placement::new(members, 3).unwrap(),
            snapshot_every,
            dir,
        };
        for id in 1..=3 {
            let node = cluster.start_node(id).await;
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    /// Starts node `id` from its data directory (empty the first time).
    async fn start_node(&self, id: NodeId) -> Node {
        let db = Arc::new(Db::new(1));
        let config = GroupsConfig {
            node_id: id,
            placement: self.placement.clone(),
            groups: 1,
            dir: self.dir.path().join(format!("node{id}")),
            snapshot_every: self.snapshot_every,
            link_filter: Some(self.filter.clone()),
            unsafe_stale_reads: false,
        };
        let groups = Groups::start(config, db.clone()).await.unwrap();
        Node { id, db, groups }
    }

    /// Stops node `id`; its memory is gone, its disk kept.
    async fn stop(&mut self, id: NodeId) {
        let node = self.nodes[id as usize - 1].take().expect("running");
        node.groups.shutdown().await;
    }

    /// Starts a stopped node `id` again, from its disk alone.
    async fn restart(&mut self, id: NodeId) {
        let node = self.start_node(id).await;
        self.nodes[id as usize - 1] = Some(node);
    }

    fn node(&self, id: NodeId) -> &Node {
        self.nodes[id as usize - 1].as_ref().expect("node stopped")
    }

    /// Waits until one of `candidates` leads the group, as every candidate sees it.
    async fn wait_leader(&self, candidates: &[NodeId], timeout: Duration) -> NodeId {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<NodeId> = candidates
                .iter()
                .filter(|&&id| self.node(id).groups.is_leader(0))
                .copied()
                .collect();
            let agreed = leaders.len() == 1
                && candidates.iter().all(|&id| {
                    self.node(id).groups.leader_of(0).map(|(l, _)| l) == Some(leaders[0])
                });
            if agreed {
                return leaders[0];
            }
            assert!(
                Instant::now() < deadline,
                "no single leader among {candidates:?} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Cluster {
    /// Waits until node 1, the group's preferred leader, leads it: before that, the leader
    /// balancer may move leadership in the middle of a test.
    async fn wait_settled(&self) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = self.wait_leader(&[1, 2, 3], Duration::from_secs(20)).await;
            if leader == 1 {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "node 1 did not become the leader"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Proposes SET `key` `value` through node `node`.
async fn set(node: &Node, key: &str, value: &str) -> Result<Response, AccessError> {
    let request = Request {
        now_ms: 1,
        seed: 0,
        op: Op::Command(vec![b"SET".to_vec(), key.into(), value.into()]),
    };
    node.groups.propose(0, request).await?.outcome().await
}

/// GET `key` from node `node`'s local keyspace (what its state machine applied).
fn local_get(node: &Node, key: &str) -> Frame {
    let args = vec![
        Bytes::from_static(b"GET"),
        Bytes::copy_from_slice(key.as_bytes()),
    ];
    let spec = CommandTable::get().lookup_request(&args).unwrap();
    let ctx = ExecCtx { now_ms: 1, seed: 0 };
    node.db.execute(spec, &args, ctx, &Caller::default()).reply
}

/// Waits until node `node` has applied `key` = `value`.
async fn wait_applied(node: &Node, key: &str, value: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let want = Frame::Bulk(Bytes::copy_from_slice(value.as_bytes()));
    while local_get(node, key) != want {
        assert!(
            Instant::now() < deadline,
            "node {} did not apply {key}={value}: {:?}",
            node.id,
            local_get(node, key)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn committed(result: Result<Response, AccessError>) {
    match result {
        Ok(Response::Reply(Frame::Simple(ok))) if &ok[..] == "OK" => {}
        other => panic!("write not committed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_is_replaced_and_catches_up_after_healing() {
    let cluster = Cluster::start(10_000).await;
    let first = cluster.wait_settled().await;
    committed(set(cluster.node(first), "k", "v1").await);

    cluster.filter.isolate(first, [1, 2, 3]);
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&id| id != first).collect();
    let started = Instant::now();
    let second = cluster.wait_leader(&rest, Duration::from_secs(20)).await;
    eprintln!("new leader {second} after {:?}", started.elapsed());
    committed(set(cluster.node(second), "k", "v2").await);
    // The majority side has the acknowledged writes; the isolated node cannot have v2.
    for &id in &rest {
        wait_applied(cluster.node(id), "k", "v2", Duration::from_secs(5)).await;
    }
    assert_eq!(
        local_get(cluster.node(first), "k"),
        Frame::Bulk("v1".into())
    );

    cluster.filter.heal();
    wait_applied(cluster.node(first), "k", "v2", Duration::from_secs(20)).await;
    // Leadership returns to the preferred leader (node 1) once it caught up.
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    committed(set(cluster.node(leader), "k", "v3").await);
    for id in 1..=3 {
        wait_applied(cluster.node(id), "k", "v3", Duration::from_secs(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_a_slow_follower_does_not_block_the_majority() {
    let cluster = Cluster::start(10_000).await;
    let leader = cluster.wait_settled().await;
    let followers: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    // One follower 300 ms away: the other one still makes a quorum, writes stay fast.
    cluster
        .filter
        .delay(leader, followers[0], Duration::from_millis(300));
    let started = Instant::now();
    for i in 0..20 {
        committed(set(cluster.node(leader), &format!("d{i}"), "x").await);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a slow follower held writes back: {:?}",
        started.elapsed()
    );
    wait_applied(
        cluster.node(followers[0]),
        "d19",
        "x",
        Duration::from_secs(10),
    )
    .await;
    cluster.filter.heal();

    // The leader alone (both followers cut off) commits nothing: the write does not complete.
    let leader = cluster.wait_settled().await;
    cluster.filter.isolate(leader, [1, 2, 3]);
    let started = Instant::now();
    let lonely = set(cluster.node(leader), "minority", "x").await;
    match lonely {
        // Rejected before proposing (its lease lapsed), or proposed and never committed: the
        // client is told the outcome is unknown once the write timeout passes.
        Err(AccessError::NotLeader { .. }) | Err(AccessError::Uncertain(_)) => {}
        other => panic!("an isolated leader answered a write: {other:?}"),
    }
    assert!(started.elapsed() <= raft::client::WRITE_TIMEOUT + Duration::from_secs(2));
    for id in [1, 2, 3] {
        if id != leader {
            assert_eq!(local_get(cluster.node(id), "minority"), Frame::Null);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_past_the_purged_log_installs_a_snapshot() {
    // Snapshots every 50 entries; a leader keeps 1000 entries after its snapshot, so 1500
    // writes missed leave the follower behind the purged log.
    let cluster = Cluster::start(50).await;
    let leader = cluster.wait_settled().await;
    let behind = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    cluster.filter.isolate(behind, [1, 2, 3]);
    let survivors: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&id| id != behind).collect();
    let leader = cluster
        .wait_leader(&survivors, Duration::from_secs(20))
        .await;
    let node = cluster.node(leader);
    let mut pending = Vec::new();
    for i in 0..1500 {
        let request = Request {
            now_ms: 1,
            seed: 0,
            op: Op::Command(vec![
                b"SET".to_vec(),
                format!("s{i}").into(),
                i.to_string().into(),
            ]),
        };
        pending.push(node.groups.propose(0, request).await.unwrap());
    }
    for write in pending {
        committed(write.outcome().await);
    }
    // Snapshots are built, and the log purged, in the background.
    let deadline = Instant::now() + Duration::from_secs(15);
    let purged = loop {
        let purged = node
            .groups
            .raft(0)
            .unwrap()
            .metrics()
            .borrow_watched()
            .purged;
        if purged.as_ref().is_some_and(|p| p.index > 100) {
            break purged;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not purge its log: {purged:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster.filter.heal();
    wait_applied(
        cluster.node(behind),
        "s1499",
        "1499",
        Duration::from_secs(30),
    )
    .await;
    wait_applied(cluster.node(behind), "s0", "0", Duration::from_secs(1)).await;
    // Its snapshot metric follows the install shortly.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let raft = cluster.node(behind).groups.raft(0).unwrap();
        let snapshot = raft.metrics().borrow_watched().snapshot;
        if snapshot.is_some_and(|s| s.index >= purged.unwrap().index) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {behind} caught up without a snapshot from the leader: {snapshot:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_commit_over_lossy_links() {
    let cluster = Cluster::start(10_000).await;
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(20))
        .await;
    for (a, b) in [(1, 2), (1, 3), (2, 3)] {
        cluster.filter.lossy(a, b, 0.1);
    }
    // One message in ten is lost, either way (and a lost stream message ends its stream):
    // replication retries, elections may happen.
    // SET is idempotent, so a write whose outcome is unknown is simply sent again.
    let started = Instant::now();
    for i in 0..30 {
        let key = format!("lossy{i}");
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "writes stalled at {key}"
            );
            let leader = cluster
                .wait_leader(&[1, 2, 3], Duration::from_secs(30))
                .await;
            match set(cluster.node(leader), &key, "x").await {
                Ok(Response::Reply(Frame::Simple(ok))) if &ok[..] == "OK" => break,
                Ok(other) => panic!("SET answered {other:?}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    eprintln!("30 writes over lossy links in {:?}", started.elapsed());
    cluster.filter.heal();
    for id in 1..=3 {
        for i in 0..30 {
            wait_applied(
                cluster.node(id),
                &format!("lossy{i}"),
                "x",
                Duration::from_secs(20),
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_recovers_from_its_disk_and_never_reads_before_catching_up() {
    let mut cluster = Cluster::start(10_000).await;
    let leader = cluster.wait_settled().await;
    for i in 0..20 {
        committed(set(cluster.node(leader), &format!("r{i}"), "before").await);
    }
    // The leader stops (its memory is lost; its log and vote stay on disk), the others go on.
    cluster.stop(leader).await;
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    let second = cluster.wait_leader(&rest, Duration::from_secs(20)).await;
    for i in 0..20 {
        committed(set(cluster.node(second), &format!("r{i}"), "after").await);
    }

    // Back from its disk: what it had acknowledged is there before anything is replicated,
    // since its own log replays up to what it knew committed.
    cluster.filter.isolate(leader, [1, 2, 3]);
    cluster.restart(leader).await;
    wait_applied(
        cluster.node(leader),
        "r0",
        "before",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        cluster.node(leader).groups.read_fence(0).await.is_err(),
        "a restarted node cut off from its peers served a read"
    );

    // Healed, it catches up; whenever it confirms a read (as leader again: it is the
    // preferred one), its state already has every write acknowledged before.
    cluster.filter.heal();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if cluster.node(leader).groups.read_fence(0).await.is_ok() {
            for i in 0..20 {
                assert_eq!(
                    local_get(cluster.node(leader), &format!("r{i}")),
                    Frame::Bulk("after".into()),
                    "node {leader} confirmed a read before catching up"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node never led again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    committed(set(cluster.node(leader), "r0", "again").await);
    for id in 1..=3 {
        wait_applied(cluster.node(id), "r0", "again", Duration::from_secs(10)).await;
    }
}
