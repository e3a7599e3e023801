//! Moving slots between groups: a slot's keys go from the group that owned it to another one
//! through their logs, the old group refuses the slot from the moment it releases it, the new
//! one serves it once it adopts it, and the move survives restarts (replayed from the log, or
//! restored from a snapshot). An interrupted move completes when run again; a late page of an
//! abandoned import cannot overwrite a slot that moved.

mod common;

use std::time::{Duration, Instant};

use common::{local_get, Cluster};
use raft::coordinator::Coordinator;
use raft::replica_call::send;
use raft::{AccessError, Groups, NodeId, Op, ReplicaCall, ReplicaReply, Request, Response, SlotOp};
use resp::Frame;
use tiering::slot_of;

fn progress(step: &str) {
    eprintln!("{step}");
}

/// A hash tag whose keys fall in group 0's half of the slots (of two groups).
fn tag_in_group_0() -> (String, u16) {
    (0..)
        .map(|i| format!("t{i}"))
        .map(|tag| {
            let slot = slot_of(format!("{{{tag}}}").as_bytes());
            (tag, slot)
        })
        .find(|(_, slot)| *slot < 8192)
        .unwrap()
}

async fn set_in(
    groups: &Groups,
    group: u32,
    key: &str,
    value: &str,
) -> Result<Response, AccessError> {
    let request = Request {
        now_ms: 1,
        seed: 0,
        op: Op::Command(
            [b"SET".as_slice(), key.as_bytes(), value.as_bytes()]
                .map(bytes::Bytes::copy_from_slice)
                .to_vec(),
        )
        .into(),
    };
    groups.propose(group, request).await?.outcome().await
}

/// SETs `key` through group `group`'s leader, retrying refusals that certainly did not apply
/// (the group electing, or moving leadership to its preferred leader) as a client would.
async fn set(cluster: &Cluster, group: u32, key: &str, value: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leader = cluster.wait_leader_of(group, &[1, 2, 3]).await;
        match set_in(&cluster.node(leader).groups, group, key, value).await {
            Err(AccessError::NotLeader { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => return result.expect("applied"),
        }
    }
}

/// Waits until every node serves `key` = `value` from its own keyspace and `group`'s keyspace
/// holds `keys` keys.
async fn wait_everywhere(cluster: &Cluster, key: &str, value: &str, group: usize, keys: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = Frame::Bulk(value.as_bytes().to_vec().into());
    for id in 1..=3 as NodeId {
        let node = cluster.node(id);
        while local_get(node, key) != want || node.db.group_len(group) != keys {
            assert!(
                Instant::now() < deadline,
                "node {id}: {key} = {:?}, group {group} holds {} keys",
                local_get(node, key),
                node.db.group_len(group)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moves_with_its_keys_and_stays_moved_across_restarts() {
    // A low snapshot threshold: the restarted node restores the move from a snapshot.
    let mut cluster = Cluster::start_groups(2, 20).await;
    let (tag, slot) = tag_in_group_0();
    for i in 0..50 {
        let key = format!("{{{tag}}}:{i}");
        assert_eq!(
            set(&cluster, 0, &key, &i.to_string()).await,
            Response::Reply(Frame::ok())
        );
    }
    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(1)], progress as fn(&str));
    let moved = coordinator.move_slots(&[slot], 1).await.unwrap();
    assert_eq!((moved.slots, moved.keys), (1, 50));

    // Group 0 refuses the slot; group 1 serves it, with every key.
    let late = format!("{{{tag}}}:late");
    assert_eq!(
        set(&cluster, 0, &late, "x").await,
        Response::NotOwned { slot }
    );
    assert_eq!(
        set(&cluster, 1, &late, "x").await,
        Response::Reply(Frame::ok())
    );
    wait_everywhere(&cluster, &format!("{{{tag}}}:49"), "49", 0, 0).await;
    wait_everywhere(&cluster, &late, "x", 1, 51).await;

    // Moving it again is done already.
    let again = coordinator.move_slots(&[slot], 1).await.unwrap();
    assert_eq!((again.slots, again.keys), (0, 0));

    // A restarted node restores ownership and keys from its snapshot and log.
    for id in [2, 1] {
        cluster.stop(id).await;
        cluster.restart(id).await;
    }
    wait_everywhere(&cluster, &late, "x", 1, 51).await;
    for id in 1..=3 {
        let db = &cluster.node(id).db;
        assert!(db.slot_state(1).owned.contains(slot), "node {id}");
        assert!(!db.slot_state(0).owned.contains(slot), "node {id}");
    }
    assert_eq!(
        set(&cluster, 0, &late, "y").await,
        Response::NotOwned { slot }
    );

    // And back: group 0 imports what group 1 holds now.
    let back = coordinator.move_slots(&[slot], 0).await.unwrap();
    assert_eq!((back.slots, back.keys), (1, 51));
    assert_eq!(
        set(&cluster, 0, &late, "z").await,
        Response::Reply(Frame::ok())
    );
    wait_everywhere(&cluster, &late, "z", 0, 51).await;
    wait_everywhere(&cluster, &late, "z", 1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_move_completes_when_run_again_and_a_stale_import_is_refused() {
    let cluster = Cluster::start_groups(2, 10_000).await;
    let (tag, slot) = tag_in_group_0();
    let key = format!("{{{tag}}}:k");
    assert_eq!(
        set(&cluster, 0, &key, "v").await,
        Response::Reply(Frame::ok())
    );
    // A coordinator that released the slot and died: nobody serves it.
    let leader = cluster.wait_leader_of(0, &[1, 2, 3]).await;
    let release = ReplicaCall::SlotStep {
        group: 0,
        op: SlotOp::Release {
            slots: vec![slot],
            to: 1,
        },
    };
    assert_eq!(
        send(&cluster.raft_addr(leader), release).await.unwrap(),
        ReplicaReply::Count(1)
    );
    assert_eq!(
        set(&cluster, 0, &key, "w").await,
        Response::NotOwned { slot }
    );
    assert_eq!(
        set(&cluster, 1, &key, "w").await,
        Response::NotOwned { slot }
    );
    // Another coordinator finishes the move.
    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(2)], progress as fn(&str));
    let moved = coordinator.move_slots(&[slot], 1).await.unwrap();
    assert_eq!((moved.slots, moved.keys), (1, 1));
    wait_everywhere(&cluster, &key, "v", 1, 1).await;
    // A page of an abandoned import, arriving late, is refused: the slot is owned now.
    let leader = cluster.wait_leader_of(1, &[1, 2, 3]).await;
    let stale = ReplicaCall::SlotStep {
        group: 1,
        op: SlotOp::Import {
            slot,
            session: 7,
            first: true,
            page: Vec::new(),
        },
    };
    let refused = send(&cluster.raft_addr(leader), stale).await;
    assert!(
        format!("{refused:?}").contains("owned here already"),
        "{refused:?}"
    );
    wait_everywhere(&cluster, &key, "v", 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reopened_on_a_node_replays_the_move_from_the_start() {
    // No snapshot: a new replica replays the group's whole log, the slot's import included.
    let mut cluster = Cluster::start_groups(2, 10_000).await;
    cluster.wait_settled().await;
    let (tag, slot) = tag_in_group_0();
    let key = format!("{{{tag}}}:k");
    assert_eq!(
        set(&cluster, 0, &key, "v").await,
        Response::Reply(Frame::ok())
    );
    let mut coordinator = Coordinator::new(vec![cluster.raft_addr(2)], progress as fn(&str));
    coordinator.move_slots(&[slot], 1).await.unwrap();
    wait_everywhere(&cluster, &key, "v", 1, 1).await;

    // Node 1's replica of group 1 moves to a new node and back: node 1 closes it (its keys
    // wiped), then opens a new one, which must not start from the slot state it had.
    cluster.join(4).await;
    coordinator.learn(4, cluster.joiners[&4].clone());
    coordinator.move_replica(1, 1, 4).await.unwrap();
    assert!(cluster.node(1).groups.raft(1).is_none());
    assert_eq!(local_get(cluster.node(1), &key), Frame::Null);
    coordinator.move_replica(1, 4, 1).await.unwrap();
    common::wait_applied(cluster.node(1), &key, "v", Duration::from_secs(20)).await;
    assert_eq!(cluster.node(1).db.group_len(1), 1);
    assert!(cluster.node(1).db.owns(1, slot));
}
