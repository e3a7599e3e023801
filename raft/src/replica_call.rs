//! Sending a [`ReplicaCall`] to a node's raft port: how the admin CLI and coordinators drive
//! membership changes.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use http::uri::PathAndQuery;
use parking_lot::Mutex;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use crate::replicas::{ReplicaCall, ReplicaError, ReplicaReply};
use crate::wire::{path, PostcardCodec, MAX_MESSAGE};

/// How long one call may take: a promotion commits two configurations, a transfer waits for
/// the new leader.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call got no answer from the node, or what the node refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("node at {addr} is unreachable: {message}")]
    Unreachable { addr: String, message: String },
    #[error(transparent)]
    Refused(#[from] ReplicaError),
}

impl CallError {
    /// Returns true if sending the same call again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Unreachable { .. } => true,
            CallError::Refused(error) => error.is_transient(),
        }
    }
}

/// One channel per node address, kept between calls: a slot move makes a few calls per slot,
/// and a connection per call cost more than the calls. A channel reconnects by itself; one
/// whose call failed is dropped, so the next call starts afresh.
static CHANNELS: LazyLock<Mutex<HashMap<String, Channel>>> = LazyLock::new(Default::default);

/// The channel to `addr`, connected at its first call.
fn channel(addr: &str) -> Result<Channel, String> {
    let mut channels = CHANNELS.lock();
    if let Some(channel) = channels.get(addr) {
        return Ok(channel.clone());
    }
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    channels.insert(addr.to_string(), channel.clone());
    Ok(channel)
}

/// Sends `call` to the node whose raft port is `addr` and returns its answer.
pub async fn send(addr: &str, call: ReplicaCall) -> Result<ReplicaReply, CallError> {
    let result = exchange(addr, call).await;
    if let Err(CallError::Unreachable { .. }) = result {
        CHANNELS.lock().remove(addr);
    }
    result
}

async fn exchange(addr: &str, call: ReplicaCall) -> Result<ReplicaReply, CallError> {
    let unreachable = |message: String| CallError::Unreachable {
        addr: addr.to_string(),
        message,
    };
    let exchange = async {
        let channel = channel(addr).map_err(unreachable)?;
        // Pages of a slot move's keys go both ways.
        let mut grpc = Grpc::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        grpc.ready().await.map_err(|e| unreachable(e.to_string()))?;
        let reply = grpc
            .unary(
                Request::new(call),
                PathAndQuery::from_static(path::REPLICA),
                PostcardCodec::<ReplicaCall, Result<ReplicaReply, ReplicaError>>::default(),
            )
            .await
            .map_err(|status| unreachable(status.message().to_string()))?;
        Ok(reply.into_inner()?)
    };
    match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(unreachable(format!(
            "no answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}
