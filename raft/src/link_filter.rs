//! Fault injection for tests: cut, slow or make lossy the links between nodes of an
//! in-process cluster.
//!
//! A node's outgoing calls consult its filter before sending and on every message of an open
//! stream, so cutting a link also ends the replication streams already flowing over it. A cut
//! looks to openraft like an unreachable peer, which is what a real partition looks like.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::typ::NodeId;

/// The state of one direction of a link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Link {
    /// Messages from the first node to the second are dropped.
    Cut,
    /// Messages from the first node to the second wait this long before being sent.
    Delay(Duration),
    /// Each message from the first node to the second is lost with this probability (0..=1).
    /// A message lost from a stream ends the stream, as a reset connection would.
    Lossy(f64),
}

/// The links of a cluster under test, shared by all its nodes. Links not listed work.
#[derive(Clone, Debug, Default)]
pub struct LinkFilter {
    links: Arc<RwLock<HashMap<(NodeId, NodeId), Link>>>,
}

impl LinkFilter {
    /// Cuts both directions between `a` and `b`.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut links = self.links.write();
        links.insert((a, b), Link::Cut);
        links.insert((b, a), Link::Cut);
    }

    /// Cuts `node` off from every one of `others`.
    pub fn isolate(&self, node: NodeId, others: impl IntoIterator<Item = NodeId>) {
        for other in others {
            if other != node {
                self.cut(node, other);
            }
        }
    }

    /// Delays messages from `from` to `to`.
    pub fn delay(&self, from: NodeId, to: NodeId, delay: Duration) {
        self.links.write().insert((from, to), Link::Delay(delay));
    }

    /// Loses each message between `a` and `b`, either way, with probability `p`.
    pub fn lossy(&self, a: NodeId, b: NodeId, p: f64) {
        let mut links = self.links.write();
        links.insert((a, b), Link::Lossy(p));
        links.insert((b, a), Link::Lossy(p));
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.links.write().clear();
    }

    /// The state of the link from `from` to `to`, if it is not working normally.
    pub fn link(&self, from: NodeId, to: NodeId) -> Option<Link> {
        self.links.read().get(&(from, to)).copied()
    }

    /// Returns true if messages from `from` to `to`, or their replies, are dropped.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.link(from, to) == Some(Link::Cut) || self.link(to, from) == Some(Link::Cut)
    }

    /// Returns true if the next message from `from` to `to` (or its reply) is lost: the link is
    /// cut, or a lossy link's dice say so.
    pub fn loses(&self, from: NodeId, to: NodeId) -> bool {
        let lost = |link| match link {
            Some(Link::Cut) => true,
            Some(Link::Lossy(p)) => rand::random::<f64>() < p,
            _ => false,
        };
        lost(self.link(from, to)) || lost(self.link(to, from))
    }
}
