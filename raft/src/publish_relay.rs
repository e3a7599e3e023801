//! PUBLISH across the cluster: Redis Cluster delivers a message published on any node to the
//! subscribers of every node, so each node relays its clients' messages to its peers.
//!
//! One queue and one sending task per peer keep one node's messages in publishing order. The
//! queues are bounded: a peer that is down or slow loses messages (pub/sub is at-most-once in
//! Redis too) rather than growing this node's memory.

use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::client::Grpc;

use crate::network::Peers;
use crate::placement::Placement;
use crate::typ::NodeId;
use crate::wire::{path, PostcardCodec, Published};

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 10_000;

/// How long one relayed message may take to reach a peer.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The sending side: a queue per peer.
pub struct PublishRelay {
    queues: Vec<(NodeId, mpsc::Sender<Published>)>,
}

impl PublishRelay {
    /// Starts one sending task per peer of `me`; they end when `stop` is set.
    pub(crate) fn start(
        me: NodeId,
        placement: &Placement,
        peers: &Peers,
        stop: &watch::Sender<bool>,
    ) -> (PublishRelay, Vec<JoinHandle<()>>) {
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for (&id, addr) in placement.members() {
            if id == me {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.push((id, tx));
            tasks.push(tokio::spawn(send_to_peer(
                id,
                addr.raft.clone(),
                peers.clone(),
                rx,
                stop.subscribe(),
            )));
        }
        (PublishRelay { queues }, tasks)
    }

    /// Queues `message` on `channel` for every peer.
    pub fn publish(&self, channel: &Bytes, message: &Bytes) {
        for (peer, queue) in &self.queues {
            let relayed = Published {
                channel: channel.clone(),
                message: message.clone(),
            };
            if queue.try_send(relayed).is_err() {
                tracing::debug!(peer, "publish relay queue full or closed, message dropped");
            }
        }
    }
}

async fn send_to_peer(
    peer: NodeId,
    addr: String,
    peers: Peers,
    mut queue: mpsc::Receiver<Published>,
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
