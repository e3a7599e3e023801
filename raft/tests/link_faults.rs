//! Three nodes in one process, talking gRPC over loopback through a link filter that cuts,
//! slows and drops: elections, failover of a partitioned leader, a delayed follower, lossy
//! links, a follower that was cut off long enough to need a snapshot, and a leader stopped and
//! restarted from its disk.

mod common;

use std::time::{Duration, Instant};

use common::{commit, commit_to_leader, committed, local_get, set, wait_applied, Cluster};
use openraft::async_runtime::watch::WatchReceiver;
use raft::{AccessError, NodeId, Op, Request, Response};
use resp::Frame;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_is_replaced_and_catches_up_after_healing() {
    let cluster = Cluster::start(10_000).await;
    let first = cluster.wait_settled().await;
    commit(cluster.node(first), "k", "v1").await;

    cluster.filter.isolate(first, [1, 2, 3]);
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&id| id != first).collect();
    let started = Instant::now();
    let second = cluster.wait_leader(&rest, Duration::from_secs(20)).await;
    eprintln!("new leader {second} after {:?}", started.elapsed());
    commit(cluster.node(second), "k", "v2").await;
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
    commit(cluster.node(leader), "k", "v3").await;
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
        commit(cluster.node(leader), &format!("d{i}"), "x").await;
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
                "SET".into(),
                format!("s{i}").into(),
                i.to_string().into(),
            ])
            .into(),
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
        commit(cluster.node(leader), &format!("r{i}"), "before").await;
    }
    // The leader stops (its memory is lost; its log and vote stay on disk), the others go on.
    cluster.stop(leader).await;
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    // Leadership may still move between the two (the balancer), so each write follows it.
    for i in 0..20 {
        commit_to_leader(&cluster, &rest, &format!("r{i}"), "after").await;
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
    // Whoever leads now (leadership may move again right after the read, and again after
    // that: the restarted node's term or the balancer), the group takes writes and every
    // replica applies them.
    commit_to_leader(&cluster, &[1, 2, 3], "r0", "again").await;
    for id in 1..=3 {
        wait_applied(cluster.node(id), "r0", "again", Duration::from_secs(10)).await;
    }
}
