use std::collections::BTreeMap;

use crate::node_info::{GroupLoad, LeaderHint, NodeInfo};

/// What the failure detector makes of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Its heartbeats are heard (always so for this node itself).
    Alive,
    /// Heard of, but not yet heard from often enough to judge: a node that just started, or
    /// that this one just learned of.
    Joining,
    /// Was alive and fell silent, or never became alive within a grace period.
    Down,
}

/// A node as gossip shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub info: NodeInfo,
    pub health: Health,
    /// The groups it says it leads.
    pub leads: Vec<LeaderHint>,
    /// Its replicas' load, by group.
    pub loads: BTreeMap<u32, GroupLoad>,
    /// The epoch of the slot map it routes by (0: none yet).
    pub slot_map_epoch: u64,
}
