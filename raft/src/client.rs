//! What client connections ask of a node's groups: proposing writes and fencing reads, with
//! errors that say whether a failed write certainly did not apply.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::impls::ProgressResponder;
use openraft::raft::ClientWriteResult;
use openraft::type_config::alias::OneshotReceiverOf;
use openraft::ReadPolicy;

use crate::groups::Groups;
use crate::metrics::{ProposalOutcome, RaftMetrics};
use crate::request::{Request, Response};
use crate::typ::{GroupId, NodeAddr, TypeConfig};
use crate::wire::MAX_ENTRY;

/// How long a write may wait for its outcome, or a read for its fence, before the client is
/// answered without one.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a write or a read fence failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// This node does not lead the group: nothing was proposed (or the read was not served).
    /// `leader` is the node that does, when known.
    #[error("this node does not lead the slot group")]
    NotLeader { leader: Option<NodeAddr> },
    /// The write was proposed but its outcome is unknown: leadership was lost or the node is
    /// stopping before the entry was known committed. It may or may not apply.
    #[error("the outcome of the write is unknown: {0}")]
    Uncertain(String),
    /// The write is larger than a log entry may be ([`MAX_ENTRY`]): nothing was proposed.
    #[error("the write takes {bytes} bytes, more than a log entry may ({max})")]
    TooLarge { bytes: usize, max: usize },
}

impl AccessError {
    /// Returns true if the failed command certainly had no effect.
    pub fn certainly_not_applied(&self) -> bool {
        matches!(
            self,
            AccessError::NotLeader { .. } | AccessError::TooLarge { .. }
        )
    }
}

/// A write proposed to a group, whose reply arrives once the entry applies.
pub struct PendingWrite {
    reply: OneshotReceiverOf<TypeConfig, ClientWriteResult<TypeConfig>>,
    group: GroupId,
    metrics: Arc<RaftMetrics>,
}

impl PendingWrite {
    /// Waits for the entry to apply; returns what applying it answered.
    pub async fn outcome(mut self) -> Result<Response, AccessError> {
        let result = self.wait().await;
        let outcome = match &result {
            Ok(_) => ProposalOutcome::Committed,
            Err(AccessError::NotLeader { .. } | AccessError::TooLarge { .. }) => {
                ProposalOutcome::Failed
            }
            Err(AccessError::Uncertain(_)) => ProposalOutcome::Uncertain,
        };
        self.metrics.proposal(self.group, outcome);
        result
    }

    async fn wait(&mut self) -> Result<Response, AccessError> {
        let reply = match tokio::time::timeout(WRITE_TIMEOUT, &mut self.reply).await {
            Ok(reply) => reply,
            // A leader cut off from its quorum neither commits nor learns that it lost its
            // leadership: the client gets an answer instead of waiting for the partition to heal.
            Err(_elapsed) => {
                return Err(AccessError::Uncertain(format!(
                    "no outcome within {}s; the write may still apply",
                    WRITE_TIMEOUT.as_secs()
                )))
            }
        };
        match reply {
            Ok(Ok(written)) => Ok(written.data),
            Ok(Err(ClientWriteError::ForwardToLeader(forward))) => Err(AccessError::NotLeader {
                leader: forward.leader_node,
            }),
            Ok(Err(error)) => Err(AccessError::Uncertain(error.to_string())),
            Err(_) => Err(AccessError::Uncertain("the raft group stopped".into())),
        }
    }
}

impl Groups {
    /// Proposes `request` to `group`'s log. Returns once the entry is queued; the reply comes
    /// from [`PendingWrite::outcome`]. Writes proposed one after the other by one caller
    /// enter the log in that order.
    pub async fn propose(
        &self,
        group: GroupId,
        request: Request,
    ) -> Result<PendingWrite, AccessError> {
        let bytes = request.approx_bytes();
        if bytes > MAX_ENTRY {
            return Err(AccessError::TooLarge {
                bytes,
                max: MAX_ENTRY,
            });
        }
        let raft = self.raft(group).ok_or_else(|| self.not_here(group))?;
        let (responder, reply) = ProgressResponder::complete_only();
        let proposed = raft
            .client_write_ff(request, Some(responder))
            .await
            // A fatal error means the group stopped before taking the entry.
            .map_err(|_fatal| AccessError::NotLeader { leader: None });
        if proposed.is_err() {
            self.metrics().proposal(group, ProposalOutcome::Failed);
        }
        proposed.map(|()| PendingWrite {
            reply,
            group,
            metrics: self.metrics().clone(),
        })
    }

    /// Returns once a read of `group` on this node is linearizable: this node leads the group
    /// (confirmed by its lease, or by a quorum when the lease lapsed) and has applied every
    /// entry committed before the call.
    pub async fn read_fence(&self, group: GroupId) -> Result<(), AccessError> {
        if self.reads_are_local(group) {
            return Ok(());
        }
        let raft = self.raft(group).ok_or_else(|| self.not_here(group))?;
        let fenced = tokio::time::timeout(
            WRITE_TIMEOUT,
            raft.ensure_linearizable(ReadPolicy::LeaseRead),
        )
        .await;
        let Ok(fenced) = fenced else {
            // A read has no effect: failing it is always safe.
            return Err(AccessError::NotLeader { leader: None });
        };
        match fenced {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(forward))) => {
                Err(AccessError::NotLeader {
                    leader: forward.leader_node,
                })
            }
            Err(error) => {
                tracing::debug!(group, %error, "read fence failed");
                Err(AccessError::NotLeader { leader: None })
            }
        }
    }

    /// The error for a group this node does not replicate: its preferred leader serves it.
    fn not_here(&self, group: GroupId) -> AccessError {
        AccessError::NotLeader {
            leader: self.leader_of(group).map(|(_, addr)| addr),
        }
    }
}
