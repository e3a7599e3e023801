//! The sending end of the transport: openraft's network traits over gRPC.
//!
//! A node keeps one HTTP/2 connection per peer ([`Peers`]), shared by every group: each call
//! names its group in a header. Replication and heartbeats use one bidirectional stream per
//! (group, follower), so a leader pipelines batches without waiting for each reply; votes and
//! leader transfers are unary calls; snapshots are uploaded as a stream of chunks. HTTP/2
//! interleaves the streams of one connection frame by frame, so a snapshot upload does not hold
//! heartbeats back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http::uri::PathAndQuery;
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::append_split::{merge_answers, split_stream, Parts};
use crate::link_filter::{Link, LinkFilter};
use crate::stopping_peers::StoppingPeers;
use crate::typ::{GroupId, NodeAddr, NodeId, Snapshot, SnapshotData, TypeConfig as C, Vote};
use crate::wire::{self, path, set_group, PostcardCodec, SnapshotChunk, MAX_MESSAGE};

/// Size of one snapshot chunk on the wire.
const SNAPSHOT_CHUNK: usize = 1 << 20;

/// The connections of one node to its peers, shared by all its groups.
#[derive(Clone)]
pub struct Peers {
    me: NodeId,
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
    /// Peers that answered they are stopping, and this node once it stops.
    stopping: StoppingPeers,
    /// Cut or slowed links (tests only).
    filter: Option<LinkFilter>,
}

impl Peers {
    /// The peers of node `me`, whose links pass through `filter` if there is one.
    pub fn new(me: NodeId, filter: Option<LinkFilter>) -> Peers {
        Peers {
            me,
            channels: Arc::default(),
            stopping: StoppingPeers::default(),
            filter,
        }
    }

    /// The nodes known to be stopping.
    pub(crate) fn stopping(&self) -> &StoppingPeers {
        &self.stopping
    }

    /// Waits out a delayed link; fails if the link to `target` is cut (unreachable: openraft
    /// backs off) or the message is lost (a network error: retried soon).
    async fn pass(&self, target: NodeId) -> Result<(), RPCError<C>> {
        let Some(filter) = &self.filter else {
            return Ok(());
        };
        if filter.is_cut(self.me, target) {
            return Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "link {} -> {target} is cut",
                self.me
            ))));
        }
        if filter.loses(self.me, target) {
            return Err(RPCError::Network(NetworkError::from_string(format!(
                "message {} -> {target} lost",
                self.me
            ))));
        }
        if let Some(Link::Delay(delay)) = filter.link(self.me, target) {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// Returns true if the next message to or from `target` is lost (a cut or lossy link).
    fn loses(&self, target: NodeId) -> bool {
        self.filter
            .as_ref()
            .is_some_and(|filter| filter.loses(self.me, target))
    }

    /// The connection to `target` at `addr` (made lazily, reconnected by tonic when it drops),
    /// for raft messages and relayed PUBLISH alike.
    pub(crate) fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, Unreachable<C>> {
        let mut channels = self.channels.lock();
        if let Some((known, channel)) = channels.get(&target) {
            if known == addr {
                return Ok(channel.clone());
            }
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Unreachable::new(&e))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(64 << 20));
        let channel = endpoint.connect_lazy();
        channels.insert(target, (addr.to_string(), channel.clone()));
        Ok(channel)
    }
}

/// The network of one group: hands out clients of that group's peers.
#[derive(Clone)]
pub struct GroupNetwork {
    pub group: GroupId,
    pub peers: Peers,
}

/// One group's client of one peer.
pub struct PeerClient {
    group: GroupId,
    target: NodeId,
    peers: Peers,
    grpc: Result<Grpc<Channel>, Unreachable<C>>,
}

impl RaftNetworkFactory<C> for GroupNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> PeerClient {
        let grpc = self.peers.channel(target, &node.raft).map(|channel| {
            Grpc::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)
        });
        PeerClient {
            group: self.group,
            target,
            peers: self.peers.clone(),
            grpc,
        }
    }
}

/// A failed call: a peer that is down, or does not run the group (yet), is unreachable and
/// retried after a backoff; anything else is a network error, retried soon.
fn rpc_error(status: Status) -> RPCError<C> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::NotFound => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

/// Notes what the outcome of a call says about `target` stopping: it answered (a node that had
/// gone is back, a new start), it refused because it is stopping, or nothing accepted a
/// connection at its address (a node that said it was stopping has stopped).
fn heard(
    stopping: &StoppingPeers,
    target: NodeId,
    outcome: Result<(), &(dyn std::error::Error + 'static)>,
) {
    let Err(error) = outcome else {
        stopping.answered(target);
        return;
    };
    if error
        .downcast_ref::<Status>()
        .is_some_and(wire::is_stopping)
    {
        stopping.note(target);
    } else if std::iter::successors(Some(error), |error| error.source())
        .any(|error| error.is::<tonic::ConnectError>())
    {
        stopping.gone(target);
    }
}

impl PeerClient {
    fn grpc(&self) -> Result<Grpc<Channel>, RPCError<C>> {
        self.grpc.clone().map_err(RPCError::Unreachable)
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        set_group(request.metadata_mut(), self.group);
        request
    }

    async fn unary<Req, Resp>(
        &mut self,
        method: &'static str,
        message: Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<C>>
    where
        Req: Serialize + Send + Sync + 'static,
        Resp: DeserializeOwned + Send + Sync + 'static,
    {
        self.peers.pass(self.target).await?;
        let mut grpc = self.grpc()?;
        let request = self.request(message);
        let (stopping, target) = (self.peers.stopping.clone(), self.target);
        let call = async move {
            grpc.ready().await.map_err(|e| {
                heard(&stopping, target, Err(&e));
                RPCError::Unreachable(Unreachable::new(&e))
            })?;
            let path = PathAndQuery::from_static(method);
            let result = grpc
                .unary(request, path, PostcardCodec::<Req, Resp>::default())
                .await;
            heard(
                &stopping,
                target,
                result.as_ref().map(drop).map_err(|s| s as _),
            );
            result
                .map(|response| response.into_inner())
                .map_err(rpc_error)
        };
        match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(result) => result,
            Err(_) => Err(RPCError::Network(NetworkError::from_string(format!(
                "{method} to node {} timed out after {:?}",
                self.target,
                option.hard_ttl()
            )))),
        }
    }
}

impl RaftNetworkV2<C> for PeerClient {
    type SnapshotData = SnapshotData;

    /// openraft replicates with `stream_append`; this single request is sent as a stream of one.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let input = futures::stream::iter([rpc]);
        let mut results = self.stream_append(input, option).await?;
        match results.next().await {
            Some(Ok(Ok(matched))) => Ok(AppendEntriesResponse::PartialSuccess(matched)),
            Some(Ok(Err(StreamAppendError::Conflict(_)))) => Ok(AppendEntriesResponse::Conflict),
            Some(Ok(Err(StreamAppendError::HigherVote(vote)))) => {
                Ok(AppendEntriesResponse::HigherVote(vote))
            }
            Some(Err(error)) => Err(error),
            None => Err(RPCError::Network(NetworkError::from_string(
                "the append stream ended without a reply",
            ))),
        }
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>>
    where
        S: futures::Stream<Item = AppendEntriesRequest<C>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let mut grpc = self.grpc()?;
            // Take the first request before connecting: openraft waits out its backoff inside
            // the request stream, so a stream that fails to connect without being polled
            // (a peer that is down) would be retried at once, in a tight loop.
            let mut input = input;
            let Some(first) = input.next().await else {
                return Ok(Box::pin(futures::stream::empty()) as BoxStream<'s, _>);
            };
            self.peers.pass(self.target).await?;
            // A link cut, or a message lost, while the stream flows ends it.
            let (peers, target) = (self.peers.clone(), self.target);
            let parts = Parts::default();
            let input = split_stream(
                futures::stream::once(async { first }).chain(input),
                parts.clone(),
            )
            .take_while(move |_| std::future::ready(!peers.loses(target)));
            let request = self.request(input);
            let stopping = self.peers.stopping.clone();
            let open = async move {
                grpc.ready().await.map_err(|e| {
                    heard(&stopping, target, Err(&e));
                    RPCError::Unreachable(Unreachable::new(&e))
                })?;
                let path = PathAndQuery::from_static(path::STREAM_APPEND);
                let opened = grpc
                    .streaming(
                        request,
                        path,
                        PostcardCodec::<AppendEntriesRequest<C>, StreamAppendResult<C>>::default(),
                    )
                    .await;
                heard(
                    &stopping,
                    target,
                    opened.as_ref().map(drop).map_err(|s| s as _),
                );
                opened.map_err(rpc_error)
            };
            // The deadline covers opening the stream; the stream then lives as long as
            // openraft keeps feeding it.
            let response = match tokio::time::timeout(option.hard_ttl(), open).await {
                Ok(response) => response?,
                Err(_) => {
                    return Err(RPCError::Network(NetworkError::from_string(format!(
                        "opening the append stream to node {} timed out",
                        self.target
                    ))))
                }
            };
            let (peers, target) = (self.peers.clone(), self.target);
            let results = response.into_inner().map(move |r| {
                if peers.loses(target) {
                    return Err(RPCError::Network(NetworkError::from_string(
                        "link cut or message lost while streaming",
                    )));
                }
                r.map_err(rpc_error)
            });
            Ok(Box::pin(merge_answers(results, parts)) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.unary(path::VOTE, rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.unary(path::PRE_VOTE, rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.unary(path::TRANSFER_LEADER, req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        self.peers
            .pass(self.target)
            .await
            .map_err(StreamingError::from)?;
        let mut grpc = self.grpc()?;
        let data = bytes::Bytes::from(snapshot.snapshot.into_inner());
        let chunk = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK)
            .clamp(1, MAX_MESSAGE / 2);
        let head = SnapshotChunk::Head {
            vote,
            meta: snapshot.meta,
        };
        let body = (0..data.len())
            .step_by(chunk)
            .map(move |at| SnapshotChunk::Data(data.slice(at..(at + chunk).min(data.len()))));
        // The whole upload is a stream built before the call: tonic only returns once the
        // server answered, which it does after the last chunk.
        let request = self.request(futures::stream::iter(std::iter::once(head).chain(body)));
        let upload = async move {
            grpc.ready()
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            let path = PathAndQuery::from_static(path::INSTALL_SNAPSHOT);
            grpc.client_streaming(
                request,
                path,
                PostcardCodec::<SnapshotChunk, SnapshotResponse<C>>::default(),
            )
            .await
            .map(|response| response.into_inner())
            .map_err(rpc_error)
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = tokio::time::timeout(option.hard_ttl(), upload) => match result {
                Ok(result) => result.map_err(StreamingError::from),
                Err(_) => Err(StreamingError::Network(NetworkError::from_string(format!(
                    "snapshot upload to node {} timed out", self.target
                )))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{serve, Registry};

    fn free_addr() -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    async fn client(peers: &Peers, target: NodeId, raft: std::net::SocketAddr) -> PeerClient {
        let mut network = GroupNetwork {
            group: 0,
            peers: peers.clone(),
        };
        let addr = NodeAddr {
            client: String::new(),
            raft: raft.to_string(),
        };
        network.new_client(target, &addr).await
    }

    async fn vote(client: &mut PeerClient) -> Result<VoteResponse<C>, RPCError<C>> {
        let request = VoteRequest::new(Vote::new(1, 1), None);
        client
            .vote(request, RPCOption::new(Duration::from_millis(500)))
            .await
    }

    /// A stopping peer whose address refuses connections has stopped, and one answering there
    /// later is a new start; an answer, or a silence, from a peer still running is not that.
    #[tokio::test]
    async fn a_stopping_peer_is_seen_gone_only_when_its_address_refuses_connections() {
        let peers = Peers::new(1, None);
        let stopping = peers.stopping().clone();

        // Nothing listens: the call fails to connect.
        let closed = free_addr();
        stopping.note(2);
        assert!(vote(&mut client(&peers, 2, closed).await).await.is_err());
        assert!(stopping.is_stopping(2), "a stopped node became a candidate");
        stopping.answered(2);
        assert!(
            !stopping.is_stopping(2),
            "the refused connection did not count as gone"
        );

        // A raft service answers, with an error (it runs no group): still the stopping process.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = free_addr();
        let server = serve(served, Registry::default(), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        stopping.note(3);
        assert!(vote(&mut client(&peers, 3, served).await).await.is_err());
        stopping.answered(3);
        assert!(stopping.is_stopping(3), "an error reply counted as gone");
        let _ = stop.send(());
        server.await.unwrap();

        // Connected but silent (a paused process): the call times out, still stopping.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        stopping.note(4);
        let result = vote(&mut client(&peers, 4, silent.local_addr().unwrap()).await).await;
        assert!(result.is_err());
        stopping.answered(4);
        assert!(stopping.is_stopping(4), "a silent peer counted as gone");
    }
}
