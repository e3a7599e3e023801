//! The receiving end of the transport: a gRPC service on the node's raft port that hands each
//! message to the raft of the group its header names.

use std::convert::Infallible;
use std::future::ready;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::body::Body;
use tonic::codec::Streaming;
use tonic::{Request, Response, Status};

use crate::replicas::{ReplicaCall, ReplicaError, ReplicaReply};
use crate::typ::{GroupId, Raft, TypeConfig as C};
use crate::wire::{self, group_of, path, PostcardCodec, Published, SnapshotChunk, MAX_MESSAGE};

/// The rafts this node runs, by group. Filled in as groups start: a message for a group that
/// is not (yet) running here is answered `Unavailable`, which its sender treats as an
/// unreachable peer and retries later.
#[derive(Clone, Default)]
pub struct Registry {
    rafts: Arc<RwLock<Vec<Option<Raft>>>>,
    /// Set by a stopping node: it must not take back the groups it handed off.
    refusing_leadership: Arc<AtomicBool>,
    /// Delivers a PUBLISH relayed by another node to this node's subscribers.
    subscribers: Arc<RwLock<Option<PublishHandler>>>,
    /// Answers membership steps and questions about replicas (the admin API).
    replica_calls: Arc<RwLock<Option<ReplicaHandler>>>,
}

/// Answers a [`ReplicaCall`] on this node.
pub type ReplicaHandler = Arc<
    dyn Fn(ReplicaCall) -> BoxFuture<'static, Result<ReplicaReply, ReplicaError>> + Send + Sync,
>;

/// Delivers a published message to local subscribers; returns how many received it.
pub type PublishHandler = Arc<dyn Fn(&bytes::Bytes, &bytes::Bytes) -> usize + Send + Sync>;

impl Registry {
    /// Makes `handler` receive the messages other nodes relay.
    pub fn on_publish(&self, handler: PublishHandler) {
        *self.subscribers.write() = Some(handler);
    }

    /// Makes `handler` answer the replica calls other nodes and the admin CLI send.
    pub fn on_replica_call(&self, handler: ReplicaHandler) {
        *self.replica_calls.write() = Some(handler);
    }

    /// From now on, leadership transfers to this node are refused.
    pub fn refuse_leadership(&self) {
        self.refusing_leadership.store(true, Ordering::Relaxed);
    }

    /// Makes `raft` the receiver of `group`'s messages.
    pub fn register(&self, group: GroupId, raft: Raft) {
        let mut rafts = self.rafts.write();
        let index = group as usize;
        if rafts.len() <= index {
            rafts.resize(index + 1, None);
        }
        rafts[index] = Some(raft);
    }

    /// Stops delivering messages to `group`.
    pub fn unregister(&self, group: GroupId) {
        if let Some(slot) = self.rafts.write().get_mut(group as usize) {
            *slot = None;
        }
    }

    /// Stops delivering messages to any group, and answering replica calls.
    pub fn clear(&self) {
        self.rafts.write().clear();
        *self.replica_calls.write() = None;
    }

    fn get(&self, group: GroupId) -> Result<Raft, Status> {
        self.rafts
            .read()
            .get(group as usize)
            .cloned()
            .flatten()
            .ok_or_else(|| Status::unavailable(format!("group {group} does not run on this node")))
    }
}

/// A raft error on the receiving side: the group is stopping or its storage failed.
fn fatal(error: impl std::fmt::Display) -> Status {
    Status::unavailable(error.to_string())
}

fn grpc<Req, Resp>() -> tonic::server::Grpc<PostcardCodec<Resp, Req>>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    tonic::server::Grpc::new(PostcardCodec::default())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// The tower service behind the raft port.
#[derive(Clone)]
pub struct RaftService {
    registry: Registry,
}

type HttpResult = Result<http::Response<Body>, Infallible>;

impl tower::Service<http::Request<Body>> for RaftService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, HttpResult>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let registry = self.registry.clone();
        match request.uri().path() {
            path::STREAM_APPEND => Box::pin(stream_append(registry, request)),
            path::VOTE => Box::pin(vote(registry, request, false)),
            path::PRE_VOTE => Box::pin(vote(registry, request, true)),
            path::INSTALL_SNAPSHOT => Box::pin(install_snapshot(registry, request)),
            path::TRANSFER_LEADER => Box::pin(transfer_leader(registry, request)),
            path::PUBLISH => Box::pin(publish(registry, request)),
            path::REPLICA => Box::pin(replica(registry, request)),
            other => {
                let status = Status::unimplemented(format!("no raft method {other}"));
                Box::pin(ready(Ok(status.into_http())))
            }
        }
    }
}

/// Replication and heartbeats: a stream of append requests in, a stream of results out, so a
/// leader keeps several batches in flight to a follower.
async fn stream_append(registry: Registry, request: http::Request<Body>) -> HttpResult {
    let handler = tower::service_fn(
        move |request: Request<Streaming<AppendEntriesRequest<C>>>| {
            let registry = registry.clone();
            async move {
                let raft = registry.get(group_of(request.metadata())?)?;
                // A broken input stream ends the replication stream; the leader opens a new one.
                let input = request
                    .into_inner()
                    .take_while(|message| ready(message.is_ok()))
                    .filter_map(|message| ready(message.ok()));
                let output: BoxStream<'static, _> =
                    Box::pin(raft.stream_append(input).map(|r| r.map_err(fatal)));
                Ok::<_, Status>(Response::new(output))
            }
        },
    );
    Ok(grpc().streaming(handler, request).await)
}

async fn vote(registry: Registry, request: http::Request<Body>, pre_vote: bool) -> HttpResult {
    let handler = tower::service_fn(move |request: Request<VoteRequest<C>>| {
        let registry = registry.clone();
        async move {
            let raft = registry.get(group_of(request.metadata())?)?;
            let vote = request.into_inner();
            let response = if pre_vote {
                raft.pre_vote(vote).await
            } else {
                raft.vote(vote).await
            };
            response.map(Response::new).map_err(fatal)
        }
    });
    Ok(grpc().unary(handler, request).await)
}

/// A snapshot arrives as a head (vote and metadata) and then its bytes in chunks; it is
/// installed once complete.
async fn install_snapshot(registry: Registry, request: http::Request<Body>) -> HttpResult {
    let handler = tower::service_fn(move |request: Request<Streaming<SnapshotChunk>>| {
        let registry = registry.clone();
        async move {
            let group = group_of(request.metadata())?;
            let raft = registry.get(group)?;
            let mut chunks = request.into_inner();
            let Some(SnapshotChunk::Head { vote, meta }) = chunks.message().await? else {
                return Err(Status::invalid_argument(
                    "a snapshot must start with its head",
                ));
            };
            let mut data = Vec::new();
            while let Some(chunk) = chunks.message().await? {
                match chunk {
                    SnapshotChunk::Data(bytes) => data.extend_from_slice(&bytes),
                    SnapshotChunk::Head { .. } => {
                        return Err(Status::invalid_argument("a snapshot has one head"))
                    }
                }
            }
            let bytes = data.len();
            let index = meta.last_log_id.as_ref().map(|id| id.index);
            let snapshot = openraft::Snapshot {
                meta,
                snapshot: std::io::Cursor::new(data),
            };
            let response = raft
                .install_full_snapshot(vote, snapshot)
                .await
                .map_err(fatal)?;
            tracing::info!(group, bytes, ?index, "installed a snapshot from the leader");
            Ok(Response::new(response))
        }
    });
    Ok(grpc().client_streaming(handler, request).await)
}

async fn transfer_leader(registry: Registry, request: http::Request<Body>) -> HttpResult {
    let handler = tower::service_fn(move |request: Request<TransferLeaderRequest<C>>| {
        let registry = registry.clone();
        async move {
            let raft = registry.get(group_of(request.metadata())?)?;
            if registry.refusing_leadership.load(Ordering::Relaxed) {
                return Err(wire::stopping());
            }
            raft.handle_transfer_leader(request.into_inner())
                .await
                .map(Response::new)
                .map_err(fatal)
        }
    });
    Ok(grpc().unary(handler, request).await)
}

/// A PUBLISH relayed by another node: delivered to this node's subscribers.
async fn publish(registry: Registry, request: http::Request<Body>) -> HttpResult {
    let handler = tower::service_fn(move |request: Request<Published>| {
        let registry = registry.clone();
        async move {
            let Published { channel, message } = request.into_inner();
            let handler = registry.subscribers.read().clone();
            let receivers = handler.map_or(0, |deliver| deliver(&channel, &message));
            Ok::<_, Status>(Response::new(receivers as u64))
        }
    });
    Ok(grpc().unary(handler, request).await)
}

/// A membership step or question about replicas, from a coordinator or the admin CLI.
async fn replica(registry: Registry, request: http::Request<Body>) -> HttpResult {
    let handler = tower::service_fn(move |request: Request<ReplicaCall>| {
        let registry = registry.clone();
        async move {
            let answer = registry.replica_calls.read().clone();
            let reply = match answer {
                Some(answer) => answer(request.into_inner()).await,
                None => Err(ReplicaError::Stopping),
            };
            Ok::<_, Status>(Response::new(reply))
        }
    });
    Ok(grpc().unary(handler, request).await)
}

/// Why the raft port could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("listen for raft messages on {addr}: {source}")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds the raft port and serves `registry`'s groups until `shutdown` resolves. Returns the
/// serving task.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, BindError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(3)))
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(64 << 20));
    let service = RaftService { registry };
    Ok(tokio::spawn(async move {
        if let Err(error) = server
            .serve_with_incoming_shutdown(service, incoming, shutdown)
            .await
        {
            tracing::error!(%error, "raft service stopped");
        }
    }))
}
