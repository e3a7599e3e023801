//! Where a cluster's groups live: its members, and which of them replicate each group.
//!
//! Membership is static for now: every node is started with the same member list and replica
//! count, so every node computes the same placement without asking anyone. Group `g`'s
//! replicas are `R` consecutive members (in id order) starting at member `g mod N`, and that
//! first replica is the group's preferred leader: replicas and leaders spread evenly.

use std::collections::BTreeMap;

use crate::typ::{GroupId, NodeAddr, NodeId};

/// A cluster's members and its replica count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    members: BTreeMap<NodeId, NodeAddr>,
    ids: Vec<NodeId>,
    replicas: usize,
}

/// Why a member list and replica count make no cluster.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error("a cluster needs at least one member")]
    NoMembers,
    #[error("replicas must be between 1 and the number of members ({members}), not {replicas}")]
    Replicas { replicas: usize, members: usize },
}

impl Placement {
    /// A placement of every group on `replicas` of `members`.
    pub fn new(
        members: BTreeMap<NodeId, NodeAddr>,
        replicas: usize,
    ) -> Result<Placement, PlacementError> {
        if members.is_empty() {
            return Err(PlacementError::NoMembers);
        }
        if !(1..=members.len()).contains(&replicas) {
            return Err(PlacementError::Replicas {
                replicas,
                members: members.len(),
            });
        }
        let ids = members.keys().copied().collect();
        Ok(Placement {
            members,
            ids,
            replicas,
        })
    }

    /// A one-node cluster.
    pub fn single(id: NodeId, addr: NodeAddr) -> Placement {
        Placement::new(BTreeMap::from([(id, addr)]), 1).expect("one member, one replica")
    }

    /// The replicas of `group`, its preferred leader first.
    pub fn replicas_of(&self, group: GroupId) -> Vec<NodeId> {
        let n = self.ids.len();
        (0..self.replicas)
            .map(|k| self.ids[(group as usize + k) % n])
            .collect()
    }

    /// The replicas of `group` with their addresses: the group's initial raft membership.
    pub fn replica_members(&self, group: GroupId) -> BTreeMap<NodeId, NodeAddr> {
        self.replicas_of(group)
            .into_iter()
            .map(|id| (id, self.members[&id].clone()))
            .collect()
    }

    /// The node that should lead `group` when it is up.
    pub fn preferred_leader(&self, group: GroupId) -> NodeId {
        self.ids[group as usize % self.ids.len()]
    }

    /// The address of member `id`.
    pub fn member(&self, id: NodeId) -> Option<&NodeAddr> {
        self.members.get(&id)
    }

    /// Every member, by id.
    pub fn members(&self) -> &BTreeMap<NodeId, NodeAddr> {
        &self.members
    }

    /// Replicas per group.
    pub fn replicas(&self) -> usize {
        self.replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u64) -> BTreeMap<NodeId, NodeAddr> {
        (1..=n)
            .map(|id| {
                let addr = NodeAddr {
                    client: format!("127.0.0.1:{}", 7000 + id),
                    raft: format!("127.0.0.1:{}", 17000 + id),
                };
                (id * 10, addr)
            })
            .collect()
    }

    #[test]
    fn replicas_and_leaders_spread_evenly() {
        let placement = Placement::new(members(5), 3).unwrap();
        let mut replicas = BTreeMap::<NodeId, usize>::new();
        let mut leaders = BTreeMap::<NodeId, usize>::new();
        for group in 0..20 {
            let of = placement.replicas_of(group);
            assert_eq!(of.len(), 3);
            let mut distinct = of.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "group {group}: {of:?}");
            assert_eq!(of[0], placement.preferred_leader(group));
            for id in of {
                *replicas.entry(id).or_default() += 1;
            }
            *leaders
                .entry(placement.preferred_leader(group))
                .or_default() += 1;
        }
        assert!(replicas.values().all(|&n| n == 12), "{replicas:?}");
        assert!(leaders.values().all(|&n| n == 4), "{leaders:?}");
    }

    #[test]
    fn bad_replica_counts_are_refused() {
        assert_eq!(
            Placement::new(members(3), 4),
            Err(PlacementError::Replicas {
                replicas: 4,
                members: 3
            })
        );
        assert!(Placement::new(members(3), 0).is_err());
        assert_eq!(
            Placement::new(BTreeMap::new(), 1),
            Err(PlacementError::NoMembers)
        );
    }
}
