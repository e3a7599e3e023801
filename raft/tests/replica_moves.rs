//! Moving a group's replicas between nodes while it takes writes: a new node joins, the
//! leader's replica moves onto it by joint consensus, and every acknowledged write survives.
//! An interrupted move completes when it is run again, and an operator's leadership transfer
//! to a node that died leaves the group to a live follower at once.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{local_get, wait_applied, Cluster};
use raft::coordinator::{ChangeError, Coordinator};
use raft::replica_call::{send, CallError};
use raft::{Groups, NodeAddr, NodeId, Op, ReplicaCall, ReplicaError, Request, Response};
use resp::Frame;

/// Writes `key{i}` = `i` for i = 0, 1, ... through whichever node leads group 0, until `stop`;
/// returns the writes acknowledged.
async fn write_until(nodes: Vec<Arc<Groups>>, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut acknowledged = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let request = Request {
            now_ms: 1,
            seed: 0,
            op: Op::Command(vec![
                "SET".into(),
                format!("key{i}").into(),
                i.to_string().into(),
            ])
            .into(),
        };
        let Some(leader) = nodes.iter().find(|groups| groups.is_leader(0)) else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if let Ok(pending) = leader.propose(0, request).await {
            if let Ok(Response::Reply(Frame::Simple(_))) = pending.outcome().await {
                acknowledged.push(i);
            }
        }
        i += 1;
    }
    acknowledged
}

fn progress(step: &str) {
    eprintln!("{step}");
}

/// The replicas `node` closes as orphans, once the metadata group answers it.
async fn close_orphans(node: &common::Node) -> Vec<raft::GroupId> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match node.groups.close_orphans().await {
            Ok(closed) => return closed,
            Err(error) if Instant::now() < deadline => {
                eprintln!("not checked yet: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("orphans not checked: {error}"),
        }
    }
}

fn voters(cluster: &Cluster, leader: NodeId) -> BTreeSet<NodeId> {
    cluster.node(leader).groups.replicas(0).unwrap().voters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_replica_moves_to_a_new_node_under_writes() {
    let mut cluster = Cluster::start(200).await;
    cluster.wait_settled().await;
    cluster.join(4).await;
    assert!(
        cluster.node(4).groups.raft(0).is_none(),
        "a joiner starts empty"
    );

    let nodes: Vec<Arc<Groups>> = (1..=4).map(|id| cluster.node(id).groups.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(nodes, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(2)], progress);
    coordinator.learn(4, cluster.joiners[&4].clone());
    let started = Instant::now();
    coordinator.move_replica(0, 1, 4).await.unwrap();
    eprintln!("moved in {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acknowledged = writer.await.unwrap();
    assert!(
        acknowledged.len() > 20,
        "too few writes: {}",
        acknowledged.len()
    );

    let leader = cluster
        .wait_leader(&[2, 3, 4], Duration::from_secs(10))
        .await;
    assert_eq!(voters(&cluster, leader), BTreeSet::from([2, 3, 4]));
    let replicas = cluster.node(leader).groups.replicas(0).unwrap();
    assert!(
        replicas.learners.is_empty() && !replicas.joint,
        "{replicas:?}"
    );
    // Node 1 no longer replicates the group, and holds none of its keys.
    assert!(cluster.node(1).groups.raft(0).is_none());
    assert_eq!(local_get(cluster.node(1), "key0"), Frame::Null);
    // Every acknowledged write is on the new replica (it got a snapshot: the log is purged
    // every 200 entries).
    let last = *acknowledged.last().unwrap();
    wait_applied(
        cluster.node(4),
        &format!("key{last}"),
        &last.to_string(),
        Duration::from_secs(10),
    )
    .await;
    for i in &acknowledged {
        assert_eq!(
            local_get(cluster.node(4), &format!("key{i}")),
            Frame::Bulk(i.to_string().into()),
            "acknowledged write {i} missing on the new replica"
        );
    }

    // Running the same move again changes nothing.
    coordinator.move_replica(0, 1, 4).await.unwrap();
    assert_eq!(voters(&cluster, leader), BTreeSet::from([2, 3, 4]));

    // Restarted, node 1 stays out of the group (retired) and node 4 comes back in it.
    cluster.stop(1).await;
    cluster.restart(1).await;
    assert!(cluster.node(1).groups.raft(0).is_none());
    cluster.stop(4).await;
    cluster.restart(4).await;
    assert!(cluster.node(4).groups.raft(0).is_some());
    wait_applied(
        cluster.node(4),
        &format!("key{last}"),
        &last.to_string(),
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_interrupted_after_promotion_completes_when_run_again() {
    let mut cluster = Cluster::start(10_000).await;
    let leader = cluster.wait_settled().await;
    cluster.join(4).await;
    let four = cluster.joiners[&4].clone();
    let at_leader = cluster.raft_addr(leader);

    // A coordinator that got as far as promoting node 4, then died.
    send(&four.raft, ReplicaCall::Open { group: 0 })
        .await
        .unwrap();
    send(
        &at_leader,
        ReplicaCall::AddLearner {
            group: 0,
            node: 4,
            addr: four.clone(),
        },
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = send(&at_leader, ReplicaCall::Promote { group: 0, node: 4 }).await {
        assert!(error.is_transient(), "{error}");
        assert!(Instant::now() < deadline, "node 4 never caught up: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(voters(&cluster, leader), BTreeSet::from([1, 2, 3, 4]));
    // Closing a voter's replica is refused: it would lose acknowledged entries.
    let refused = send(&cluster.raft_addr(3), ReplicaCall::Close { group: 0 }).await;
    assert!(refused.is_err(), "a voter's replica was closed");

    // Another coordinator runs the whole move again: it finishes what is left.
    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(3)], progress);
    coordinator.move_replica(0, 3, 4).await.unwrap();
    let leader = cluster
        .wait_leader(&[1, 2, 4], Duration::from_secs(10))
        .await;
    assert_eq!(voters(&cluster, leader), BTreeSet::from([1, 2, 4]));
    assert!(cluster.node(3).groups.raft(0).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leadership_transfer_to_a_dead_node_leaves_the_group_to_a_live_follower() {
    let mut cluster = Cluster::start(10_000).await;
    let leader = cluster.wait_settled().await;
    common::commit(cluster.node(leader), "k", "v1").await;
    // The operator picked node 2, which died before the transfer reached it.
    cluster.stop(2).await;
    let started = Instant::now();
    let transfer = cluster
        .node(leader)
        .groups
        .answer(ReplicaCall::TransferLeadership { group: 0, to: 2 })
        .await;
    let answered = started.elapsed();
    assert!(
        matches!(
            transfer,
            Err(ReplicaError::NotTransferred { group: 0, to: 2 })
        ),
        "{transfer:?}"
    );
    // openraft's transferring leader takes no writes, stops heartbeating and never cancels;
    // left alone, the group would wait for node 3 to campaign, no sooner than the leader
    // lease (1.6 s) plus an election timeout (1.0 s) later, and the call for its 10 s timeout.
    // The hand-over to node 3 takes ~0.6 s.
    assert!(
        answered < Duration::from_secs(2),
        "answered after {answered:?}"
    );
    cluster.wait_leader(&[1, 3], Duration::from_secs(2)).await;
    common::commit_to_leader(&cluster, &[1, 3], "k", "v2").await;
    let written = started.elapsed();
    eprintln!("the group took a write {written:?} after the transfer started");
    assert!(
        written < Duration::from_millis(2200),
        "first write after {written:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_learns_of_its_demotion_late_is_closed_all_the_same() {
    let mut cluster = Cluster::start(10_000).await;
    let leader = cluster.wait_settled().await;
    cluster.join(4).await;
    let from = (1..=3).find(|&node| node != leader).unwrap();
    // The leader's messages reach `from` late: its demotion commits by the others' votes
    // before it hears of it, and a node refuses to close a replica it sees as a voter. Given
    // up at once, the replica stayed open on a node dropped from the group, naming a former
    // leader to whoever asked (and `admin` planned on that view forever).
    cluster
        .filter
        .delay(leader, from, Duration::from_millis(500));
    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(leader)], progress);
    coordinator.learn(4, cluster.joiners[&4].clone());
    coordinator.move_replica(0, from, 4).await.unwrap();
    cluster.filter.heal();
    assert!(
        cluster.node(from).groups.raft(0).is_none(),
        "node {from} kept its replica of a group it was dropped from"
    );
    let mut expected = BTreeSet::from([1, 2, 3, 4]);
    expected.remove(&from);
    assert_eq!(voters(&cluster, leader), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_removed_while_its_node_was_down_is_closed_when_it_returns() {
    let mut cluster = Cluster::start(10_000).await;
    let leader = cluster.wait_settled().await;
    cluster.join(4).await;
    let from = (1..=3).find(|&node| node != leader).unwrap();
    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(leader)], progress);
    coordinator
        .add_replica(0, 4, cluster.joiners[&4].clone())
        .await
        .unwrap();
    // `from` is removed while it is down: demoted and dropped, never told to close.
    cluster.stop(from).await;
    let leader_addr = cluster.raft_addr(leader);
    for call in [
        ReplicaCall::Demote {
            group: 0,
            node: from,
        },
        ReplicaCall::RemoveLearner {
            group: 0,
            node: from,
        },
    ] {
        send(&leader_addr, call).await.unwrap();
    }
    let mut expected = BTreeSet::from([1, 2, 3, 4]);
    expected.remove(&from);
    assert_eq!(voters(&cluster, leader), expected);
    // Back from its disk, it believes it still votes.
    cluster.restart(from).await;
    let orphan = cluster.node(from).groups.replicas(0).unwrap();
    assert!(orphan.voters.contains(&from), "{orphan:?}");
    // Nothing is closed before the record shows the newer membership...
    assert_eq!(close_orphans(cluster.node(from)).await, []);
    cluster
        .node(leader)
        .groups
        .report_placement(&mut Default::default())
        .await
        .unwrap();
    // ...then the orphan is, and only it.
    for node in [1, 2, 3, 4].into_iter().filter(|&n| n != from) {
        assert_eq!(close_orphans(cluster.node(node)).await, []);
    }
    assert_eq!(close_orphans(cluster.node(from)).await, [0]);
    assert!(cluster.node(from).groups.raft(0).is_none());
    cluster.stop(from).await;
    cluster.restart(from).await;
    assert!(
        cluster.node(from).groups.raft(0).is_none(),
        "a closed replica came back at restart"
    );
    // The group goes on without it.
    let leader = cluster.wait_leader_of(0, &[1, 2, 3, 4]).await;
    common::commit(cluster.node(leader), "after", "orphan closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ids_are_registered_once_and_never_reused() {
    let mut cluster = Cluster::start(10_000).await;
    cluster.wait_settled().await;
    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(2)], progress);
    let four = NodeAddr {
        client: "127.0.0.1:7004".into(),
        raft: "127.0.0.1:17004".into(),
    };
    let refused = |result: Result<(), ChangeError>| {
        matches!(
            result,
            Err(ChangeError::Step {
                error: CallError::Refused(ReplicaError::NodeIdUsed { .. }),
                ..
            })
        )
    };
    coordinator.register_node(4, four.clone()).await.unwrap();
    // Again, the same: done.
    coordinator.register_node(4, four.clone()).await.unwrap();
    let elsewhere = NodeAddr {
        client: "127.0.0.1:7005".into(),
        ..four.clone()
    };
    assert!(refused(coordinator.register_node(4, elsewhere).await));
    assert!(refused(coordinator.register_node(2, four.clone()).await));
    coordinator.retire_node(4).await.unwrap();
    coordinator.retire_node(4).await.unwrap();
    assert!(
        refused(coordinator.register_node(4, four.clone()).await),
        "a retired id was reused"
    );

    // The registry is replicated: it survives its leader's restart.
    let meta = cluster.node(1).groups.meta_group();
    let leader = cluster.wait_leader_of(meta, &[1, 2, 3]).await;
    cluster.stop(leader).await;
    cluster.restart(leader).await;
    let registry = coordinator.registry().await.unwrap();
    let ids: Vec<(NodeId, bool)> = registry.iter().map(|n| (n.id, n.retired)).collect();
    assert_eq!(ids, [(1, false), (2, false), (3, false), (4, true)]);
    assert!(refused(coordinator.register_node(4, four).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_placement_record_keeps_each_groups_newest_membership() {
    let cluster = Cluster::start(10_000).await;
    cluster.wait_settled().await;
    let meta = cluster.node(1).groups.meta_group();
    // Every node reports the groups it leads, as its gossip loop does once a second.
    let mut reported = [(); 3].map(|_| std::collections::BTreeMap::new());
    for (id, reported) in (1..=3).zip(reported.iter_mut()) {
        let groups = &cluster.node(id).groups;
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(error) = groups.report_placement(reported).await {
            assert!(
                Instant::now() < deadline,
                "node {id} cannot report: {error}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(1)], progress);
    let record = coordinator.placement().await.unwrap();
    assert_eq!(
        record.len(),
        meta as usize + 1,
        "every group and the metadata group"
    );
    let all: BTreeSet<NodeId> = (1..=3).collect();
    assert!(record
        .iter()
        .all(|r| r.voters == all && r.learners.is_empty()));

    // Reports reach the metadata leader; an old or repeated version changes nothing, a newer
    // one replaces the group's entry.
    let leader = cluster.wait_leader_of(meta, &[1, 2, 3]).await;
    let record_call = |version: (u64, u64), voters: &[NodeId]| {
        ReplicaCall::RecordPlacement(vec![raft::placement_record::RecordedReplicas {
            group: 0,
            version,
            voters: voters.iter().copied().collect(),
            learners: BTreeSet::new(),
        }])
    };
    let current = record.iter().find(|r| r.group == 0).unwrap().version;
    let addr = cluster.raft_addr(leader);
    let stale = send(&addr, record_call(current, &[1, 2, 4])).await.unwrap();
    assert_eq!(stale, raft::ReplicaReply::Count(0));
    let newer = (current.0 + 1, current.1 + 10);
    let changed = send(&addr, record_call(newer, &[1, 3, 4])).await.unwrap();
    assert_eq!(changed, raft::ReplicaReply::Count(1));
    let record = coordinator.placement().await.unwrap();
    let group0 = record.iter().find(|r| r.group == 0).unwrap();
    assert_eq!((group0.version, group0.voters.len()), (newer, 3));
    assert!(group0.voters.contains(&4) && !group0.voters.contains(&2));

    // A node the record still places cannot be retired; once it is placed nowhere, it can.
    coordinator
        .register_node(4, NodeAddr::default())
        .await
        .unwrap();
    let refused = send(&addr, ReplicaCall::RetireNode { id: 4 }).await;
    assert!(
        matches!(
            refused,
            Err(CallError::Refused(ReplicaError::StillPlaced { node: 4, ref groups })) if groups == &[0]
        ),
        "{refused:?}"
    );
    let gone = (newer.0, newer.1 + 1);
    send(&addr, record_call(gone, &[1, 2, 3])).await.unwrap();
    send(&addr, ReplicaCall::RetireNode { id: 4 })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_group_moves_off_a_node_and_keeps_its_registry() {
    let mut cluster = Cluster::start(10_000).await;
    cluster.wait_settled().await;
    cluster.join(4).await;
    let meta = cluster.node(1).groups.meta_group();
    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(2)], progress);
    coordinator.learn(4, cluster.joiners[&4].clone());
    coordinator
        .register_node(4, cluster.joiners[&4].clone())
        .await
        .unwrap();
    coordinator.move_replica(meta, 1, 4).await.unwrap();
    let replicas = coordinator.replicas(meta).await.unwrap();
    assert!(replicas.metadata);
    assert_eq!(replicas.voters, BTreeSet::from([2, 3, 4]));

    // Node 1 keeps its slot groups but not the metadata group, across a restart; node 4
    // reopens the replica it was given from its disk.
    cluster.stop(1).await;
    cluster.restart(1).await;
    assert!(cluster.node(1).groups.raft(meta).is_none());
    assert!(cluster.node(1).groups.raft(0).is_some());
    cluster.stop(4).await;
    cluster.restart(4).await;
    assert!(cluster.node(4).groups.raft(meta).is_some());

    // Without node 1 and with node 2 down, nodes 3 and 4 are the metadata group's quorum:
    // the registry still answers (it could not with its first replicas, 1, 2 and 3).
    cluster.stop(1).await;
    cluster.stop(2).await;
    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(3)], progress);
    coordinator.learn(4, cluster.joiners[&4].clone());
    let registry = coordinator.registry().await.unwrap();
    let ids: Vec<NodeId> = registry.iter().map(|n| n.id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
}
