//! PUBLISH across the cluster: Redis Cluster delivers a message published on any node to the
//! subscribers of every node, so each node relays its clients' messages to every node it
//! knows of: the static members, the replicas of its groups and the nodes gossip hears from
//! (a node that joined later included).
//!
//! One queue and one sending task per peer keep one node's messages in publishing order. The
//! queues are bounded, in messages and in bytes: a peer that is down or slow loses messages
//! (pub/sub is at-most-once in Redis too) rather than growing this node's memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::client::Grpc;

use crate::network::Peers;
use crate::typ::{NodeAddr, NodeId};
use crate::wire::{path, PostcardCodec, Published};

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 10_000;

/// Bytes of messages queued per peer before new ones are dropped (a message may be as large
/// as `proto-max-bulk-len`: ten thousand of them would not fit in memory).
const QUEUE_BYTES: usize = 64 << 20;

/// How long one relayed message may take to reach a peer.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The sending side: a queue per peer, started the first time a message goes to that peer.
pub struct PublishRelay {
    me: NodeId,
    peers: Peers,
    stop: watch::Receiver<bool>,
    queues: Mutex<HashMap<NodeId, PeerQueue>>,
}

/// The messages waiting for one peer's sending task.
struct PeerQueue {
    tx: mpsc::Sender<Published>,
    /// Bytes of the messages in `tx`'s queue.
    bytes: Arc<AtomicUsize>,
}

/// What a relayed message counts against its queue's bytes.
fn size(published: &Published) -> usize {
    published.channel.len() + published.message.len()
}

impl PublishRelay {
    /// A relay from `me`; its sending tasks end when `stop` is set.
    pub(crate) fn new(me: NodeId, peers: &Peers, stop: &watch::Sender<bool>) -> PublishRelay {
        PublishRelay {
            me,
            peers: peers.clone(),
            stop: stop.subscribe(),
            queues: Mutex::default(),
        }
    }

    /// Queues `message` on `channel` for every one of `members` but this node. Members are
    /// whoever this node knows of at the time (static, joined, gossiped), so a node that joined
    /// later receives messages too. Returns the sending tasks started for members seen for the
    /// first time, for the caller to own.
    pub(crate) fn publish(
        &self,
        members: &BTreeMap<NodeId, NodeAddr>,
        channel: &Bytes,
        message: &Bytes,
    ) -> Vec<JoinHandle<()>> {
        let mut started = Vec::new();
        let mut queues = self.queues.lock();
        for (&id, addr) in members {
            if id == self.me {
                continue;
            }
            let queue = queues.entry(id).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let bytes = Arc::new(AtomicUsize::new(0));
                started.push(tokio::spawn(send_to_peer(
                    id,
                    addr.raft.clone(),
                    self.peers.clone(),
                    (rx, bytes.clone()),
                    self.stop.clone(),
                )));
                PeerQueue { tx, bytes }
            });
            let relayed = Published {
                channel: channel.clone(),
                message: message.clone(),
            };
            let size = size(&relayed);
            let queued = queue.bytes.fetch_add(size, Ordering::Relaxed);
            if queued + size > QUEUE_BYTES || queue.tx.try_send(relayed).is_err() {
                queue.bytes.fetch_sub(size, Ordering::Relaxed);
                tracing::debug!(
                    peer = id,
                    "publish relay queue full or closed, message dropped"
                );
            }
        }
        started
    }

    /// Bytes queued for `peer` (tests).
    #[cfg(test)]
    fn queued_bytes(&self, peer: NodeId) -> usize {
        self.queues
            .lock()
            .get(&peer)
            .map_or(0, |queue| queue.bytes.load(Ordering::Relaxed))
    }
}

async fn send_to_peer(
    peer: NodeId,
    addr: String,
    peers: Peers,
    (mut queue, queued_bytes): (mpsc::Receiver<Published>, Arc<AtomicUsize>),
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let published = tokio::select! {
            next = queue.recv() => match next {
                Some(published) => published,
                None => return,
            },
            _ = stop.wait_for(|stop| *stop) => return,
        };
        queued_bytes.fetch_sub(size(&published), Ordering::Relaxed);
        let Ok(channel) = peers.channel(peer, &addr) else {
            continue;
        };
        let mut grpc = Grpc::new(channel);
        let send = async {
            grpc.ready().await.map_err(|e| e.to_string())?;
            let path = PathAndQuery::from_static(path::PUBLISH);
            grpc.unary(
                tonic::Request::new(published),
                path,
                PostcardCodec::<Published, u64>::default(),
            )
            .await
            .map_err(|status| status.to_string())
        };
        match tokio::time::timeout(SEND_TIMEOUT, send).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::debug!(peer, %error, "relaying a message failed"),
            Err(_) => tracing::debug!(peer, "relaying a message timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that accepts connections and never answers holds each relayed message for the
    /// send timeout: what piles up for it stays within the byte bound.
    #[tokio::test]
    async fn a_stalled_peer_queues_at_most_its_byte_bound() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = NodeAddr {
            client: String::new(),
            raft: silent.local_addr().unwrap().to_string(),
        };
        let members = BTreeMap::from([(2, addr)]);
        let stop = watch::channel(false).0;
        let relay = PublishRelay::new(1, &Peers::new(1, None), &stop);
        let message = Bytes::from(vec![b'x'; 1 << 20]);
        let mut tasks = Vec::new();
        for _ in 0..100 {
            tasks.extend(relay.publish(&members, &Bytes::from_static(b"feed"), &message));
        }
        let queued = relay.queued_bytes(2);
        assert!(
            (QUEUE_BYTES - (2 << 20)..=QUEUE_BYTES).contains(&queued),
            "{queued} bytes queued for a stalled peer"
        );
        stop.send_replace(true);
        for task in tasks {
            task.await.unwrap();
        }
    }
}
