use std::collections::BTreeMap;

use crate::node_info::{GroupLoad, LeaderHint, NodeInfo};

/// A node as gossip shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub info: NodeInfo,
    /// The failure detector hears its heartbeats (always true for this node itself).
    pub alive: bool,
    /// The groups it says it leads.
    pub leads: Vec<LeaderHint>,
    /// Its replicas' load, by group.
    pub loads: BTreeMap<u32, GroupLoad>,
}
