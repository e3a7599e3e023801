//! The nodes known to be stopping: this one once it starts handing its groups off, and peers
//! that refused a leadership transfer because they are stopping.
//!
//! A stopping node refuses the groups others hand it (it would stop leading them at once). When
//! a whole cluster stops together, every node hands its groups to peers that are stopping too:
//! without this record each transfer waited out its full timeout before the next was tried, and
//! each was logged as a follower failing to take the group.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::typ::NodeId;

/// How long a node counts as stopping after it said so: longer than a whole cluster's
/// hand-offs take. A node restarted sooner is merely not offered leadership until then.
const REMEMBERED: Duration = Duration::from_secs(10);

/// When each node known to be stopping said so. Shared by all groups of a node.
#[derive(Clone)]
pub struct StoppingPeers {
    said: Arc<watch::Sender<HashMap<NodeId, Instant>>>,
}

impl Default for StoppingPeers {
    fn default() -> StoppingPeers {
        StoppingPeers {
            said: Arc::new(watch::channel(HashMap::new()).0),
        }
    }
}

fn recent(said: &HashMap<NodeId, Instant>, node: NodeId) -> bool {
    said.get(&node).is_some_and(|at| at.elapsed() < REMEMBERED)
}

impl StoppingPeers {
    /// Records that `node` is stopping.
    pub fn note(&self, node: NodeId) {
        self.said.send_modify(|said| {
            said.insert(node, Instant::now());
        });
    }

    /// Whether `node` said it is stopping (recently).
    pub fn is_stopping(&self, node: NodeId) -> bool {
        recent(&self.said.borrow(), node)
    }

    /// Resolves once `node` is known to be stopping.
    pub async fn stopping(&self, node: NodeId) {
        let mut said = self.said.subscribe();
        // The sender lives as long as `self`, so the wait ends only by the condition.
        let _ = said.wait_for(|said| recent(said, node)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_when_that_node_is_noted_and_not_before() {
        let stopping = StoppingPeers::default();
        assert!(!stopping.is_stopping(2));
        let waiter = tokio::spawn({
            let stopping = stopping.clone();
            async move { stopping.stopping(2).await }
        });
        stopping.note(3);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "noting node 3 ended a wait for node 2"
        );
        stopping.note(2);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the wait ended")
            .unwrap();
        assert!(stopping.is_stopping(2) && stopping.is_stopping(3));
        // Already noted: resolves at once.
        tokio::time::timeout(Duration::from_secs(5), stopping.stopping(3))
            .await
            .expect("resolved at once");
    }
}
