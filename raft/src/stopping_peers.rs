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

/// How long a node counts as stopping after it said so, unless it is seen gone first: longer
/// than a whole cluster's hand-offs take.
const REMEMBERED: Duration = Duration::from_secs(10);

/// What is known of a node that said it is stopping.
#[derive(Clone, Copy, Debug)]
enum Said {
    /// It said so at this instant, and may still be handing its groups off.
    Stopping(Instant),
    /// Since then nothing accepted a connection at its address: it stopped. It counts as
    /// stopping until it answers again, as a new start.
    Gone,
}

/// The nodes known to be stopping, and when each said so. Shared by all groups of a node.
#[derive(Clone)]
pub struct StoppingPeers {
    said: Arc<watch::Sender<HashMap<NodeId, Said>>>,
}

impl Default for StoppingPeers {
    fn default() -> StoppingPeers {
        StoppingPeers {
            said: Arc::new(watch::channel(HashMap::new()).0),
        }
    }
}

fn stopping(said: &HashMap<NodeId, Said>, node: NodeId) -> bool {
    match said.get(&node) {
        Some(Said::Stopping(at)) => at.elapsed() < REMEMBERED,
        Some(Said::Gone) => true,
        None => false,
    }
}

impl StoppingPeers {
    /// Records that `node` is stopping.
    pub fn note(&self, node: NodeId) {
        self.said.send_modify(|said| {
            said.insert(node, Said::Stopping(Instant::now()));
        });
    }

    /// Records that nothing accepted a connection at `node`'s address: if it said it was
    /// stopping, it has stopped.
    pub fn gone(&self, node: NodeId) {
        self.said
            .send_if_modified(|said| match said.get_mut(&node) {
                Some(state @ Said::Stopping(_)) => {
                    *state = Said::Gone;
                    true
                }
                _ => false,
            });
    }

    /// Records that `node` answered a call: if it had stopped, this is a new start, which is
    /// not stopping. (A node still stopping answers too, so this forgets only a gone one.)
    pub fn answered(&self, node: NodeId) {
        if !matches!(self.said.borrow().get(&node), Some(Said::Gone)) {
            return;
        }
        self.said.send_if_modified(|said| {
            matches!(said.get(&node), Some(Said::Gone)) && said.remove(&node).is_some()
        });
    }

    /// Whether `node` is known to be stopping: it said so recently, or has stopped since.
    pub fn is_stopping(&self, node: NodeId) -> bool {
        stopping(&self.said.borrow(), node)
    }

    /// Resolves once `node` is known to be stopping.
    pub async fn stopping(&self, node: NodeId) {
        let mut said = self.said.subscribe();
        // The sender lives as long as `self`, so the wait ends only by the condition.
        let _ = said.wait_for(|said| stopping(said, node)).await;
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

    #[test]
    fn a_stopping_node_counts_as_stopping_until_it_answers_after_it_was_gone() {
        let stopping = StoppingPeers::default();
        // Nothing known: neither a refused connection nor an answer changes that.
        stopping.gone(2);
        stopping.answered(2);
        assert!(!stopping.is_stopping(2));
        stopping.note(2);
        // Still handing its groups off, it answers calls: still stopping.
        stopping.answered(2);
        assert!(
            stopping.is_stopping(2),
            "an answer while stopping forgot it"
        );
        stopping.gone(2);
        assert!(
            stopping.is_stopping(2),
            "a stopped node is no candidate either"
        );
        stopping.answered(2);
        assert!(
            !stopping.is_stopping(2),
            "a node started again still counts as stopping"
        );
    }
}
