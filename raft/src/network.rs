//! The raft transport between nodes.
//!
//! Until the gRPC transport lands, a node's groups have no peers to talk to: every group has
//! one replica (the node itself), and openraft never sends a message. `Unconnected` is the
//! honest transport for that case: any attempt to reach another node fails as unreachable.

use std::future::Future;

use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, OptionalSend};

use crate::typ::{NodeAddr, NodeId, Snapshot, SnapshotData, TypeConfig, Vote};

/// A transport with no connections: for groups whose only member is this node.
#[derive(Clone, Debug, Default)]
pub struct Unconnected;

fn unreachable(target: NodeId) -> Unreachable<TypeConfig> {
    Unreachable::new(&AnyError::error(format!("no transport to node {target}")))
}

/// The client of one (unreachable) peer.
pub struct UnconnectedPeer {
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Unconnected {
    type Network = UnconnectedPeer;

    async fn new_client(&mut self, target: NodeId, _node: &NodeAddr) -> UnconnectedPeer {
        UnconnectedPeer { target }
    }
}

impl RaftNetworkV2<TypeConfig> for UnconnectedPeer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable(self.target)))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable(self.target)))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(unreachable(self.target)))
    }
}
