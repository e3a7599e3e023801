//! Fault injection for tests: cut or slow the links between nodes of an in-process cluster.
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Messages from the first node to the second are dropped.
    Cut,
    /// Messages from the first node to the second wait this long before being sent.
    Delay(Duration),
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
}
