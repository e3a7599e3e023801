//! Entries far larger than a usual command: a follower's backlog of them travels in messages of
//! bounded size, and a write too large for one entry is refused without holding up its group.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{commit, local_get, wait_applied, Cluster};
use raft::wire::{BATCH_BYTES, MAX_ENTRY};
use raft::{AccessError, Op, Request};
use resp::Frame;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_one_message_replicates_and_an_oversized_write_is_refused() {
    let cluster = Cluster::start(10_000).await;
    let leader = cluster.wait_settled().await;
    // Node 3 misses writes adding up to three batches' worth: catching up, it is sent them
    // together, cut into several messages.
    cluster.filter.cut(leader, 3);
    let value = "v".repeat(10 << 20);
    let keys: Vec<String> = (0..(3 * BATCH_BYTES / value.len()))
        .map(|i| format!("k{i}"))
        .collect();
    for key in &keys {
        commit(cluster.node(leader), key, &value).await;
    }
    cluster.filter.heal();
    for key in &keys {
        wait_applied(cluster.node(3), key, &value, Duration::from_secs(30)).await;
    }

    // One byte over what an entry may hold: refused before it is proposed.
    let oversized = Request {
        now_ms: 1,
        seed: 0,
        op: Arc::new(Op::Command(vec![
            Bytes::from_static(b"SET"),
            Bytes::from_static(b"huge"),
            Bytes::from(vec![0; MAX_ENTRY]),
        ])),
    };
    let refused = cluster
        .node(leader)
        .groups
        .propose(0, oversized)
        .await
        .err();
    assert!(
        matches!(refused, Some(AccessError::TooLarge { max: MAX_ENTRY, .. })),
        "{refused:?}"
    );
    assert!(refused.unwrap().certainly_not_applied());
    commit(cluster.node(leader), "after", "1").await;
    for id in 1..=3 {
        wait_applied(cluster.node(id), "after", "1", Duration::from_secs(10)).await;
        assert_eq!(local_get(cluster.node(id), "huge"), Frame::Null);
    }
}
