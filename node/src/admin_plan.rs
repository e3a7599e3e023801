//! What `autocache admin` does next to even out a cluster: pure functions from the groups'
//! current replicas to one move, so every step re-reads the cluster and a rerun resumes.

use std::collections::{BTreeMap, BTreeSet};

use raft::{GroupId, NodeId};

/// One group as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub group: GroupId,
    pub leader: Option<NodeId>,
    pub voters: BTreeSet<NodeId>,
}

/// A replica of `group` to move from one node to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaMove {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
}

/// How many replicas (or leaderships, with `leaders`) each of `nodes` holds.
fn counts(
    groups: &[GroupView],
    nodes: &BTreeSet<NodeId>,
    leaders: bool,
) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = nodes.iter().map(|&node| (node, 0)).collect();
    for group in groups {
        let holders: Vec<NodeId> = if leaders {
            group.leader.into_iter().collect()
        } else {
            group.voters.iter().copied().collect()
        };
        for node in holders {
            if let Some(count) = counts.get_mut(&node) {
                *count += 1;
            }
        }
    }
    counts
}

/// The next move that takes a replica off `leaving` (to the node among `nodes` with the
/// fewest replicas that does not replicate the group yet), or None once it holds none.
/// Replicas it does not lead go first, so leadership moves only when it must.
pub fn drain(
    groups: &[GroupView],
    nodes: &BTreeSet<NodeId>,
    leaving: NodeId,
) -> Option<ReplicaMove> {
    let staying: BTreeSet<NodeId> = nodes.iter().copied().filter(|&n| n != leaving).collect();
    let load = counts(groups, &staying, false);
    let mut held: Vec<&GroupView> = groups
        .iter()
        .filter(|group| group.voters.contains(&leaving))
        .collect();
    held.sort_by_key(|group| group.leader == Some(leaving));
    held.into_iter().find_map(|group| {
        let to = load
            .iter()
            .filter(|(node, _)| !group.voters.contains(node))
            .min_by_key(|(node, count)| (**count, **node))?
            .0;
        Some(ReplicaMove {
            group: group.group,
            from: leaving,
            to: *to,
        })
    })
}

/// The next move that evens out replica counts over `nodes` (the fullest node gives a group
/// the emptiest lacks), or None once they differ by at most one.
pub fn spread(groups: &[GroupView], nodes: &BTreeSet<NodeId>) -> Option<ReplicaMove> {
    let load = counts(groups, nodes, false);
    let (&to, &fewest) = load.iter().min_by_key(|(node, count)| (**count, **node))?;
    let mut by_load: Vec<(NodeId, usize)> = load.into_iter().collect();
    by_load.sort_by_key(|(node, count)| (std::cmp::Reverse(*count), *node));
    for (from, most) in by_load {
        if most <= fewest + 1 {
            return None;
        }
        let mut candidates: Vec<&GroupView> = groups
            .iter()
            .filter(|group| group.voters.contains(&from) && !group.voters.contains(&to))
            .collect();
        candidates.sort_by_key(|group| group.leader == Some(from));
        if let Some(group) = candidates.first() {
            return Some(ReplicaMove {
                group: group.group,
                from,
                to,
            });
        }
    }
    None
}

/// The next leadership transfer that evens out how many groups each of `nodes` leads: a
/// group of the node leading most goes to a voter leading fewer (by two or more), or None.
pub fn lead(groups: &[GroupView], nodes: &BTreeSet<NodeId>) -> Option<(GroupId, NodeId)> {
    let load = counts(groups, nodes, true);
    let mut by_load: Vec<(NodeId, usize)> = load.iter().map(|(n, c)| (*n, *c)).collect();
    by_load.sort_by_key(|(node, count)| (std::cmp::Reverse(*count), *node));
    for (from, most) in &by_load {
        for group in groups.iter().filter(|group| group.leader == Some(*from)) {
            let to = group
                .voters
                .iter()
                .filter_map(|voter| Some((*voter, *load.get(voter)?)))
                .filter(|(_, count)| count + 1 < *most)
                .min_by_key(|(node, count)| (*count, *node));
            if let Some((to, _)) = to {
                return Some((group.group, to));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `groups` groups on nodes 1..=n, 3 replicas each, placed as the static placement does.
    fn placed(n: u64, groups: u32) -> Vec<GroupView> {
        (0..groups)
            .map(|group| {
                let voters: BTreeSet<NodeId> = (0..3).map(|k| (group as u64 + k) % n + 1).collect();
                GroupView {
                    group,
                    leader: Some(group as u64 % n + 1),
                    voters,
                }
            })
            .collect()
    }

    /// Applies planner moves until it has none; returns the final layout.
    fn settle(mut groups: Vec<GroupView>, nodes: &BTreeSet<NodeId>) -> Vec<GroupView> {
        for _ in 0..1000 {
            if let Some(step) = spread(&groups, nodes) {
                let group = &mut groups[step.group as usize];
                assert!(group.voters.remove(&step.from));
                assert!(group.voters.insert(step.to));
                if group.leader == Some(step.from) {
                    group.leader = Some(step.to);
                }
            } else if let Some((group, to)) = lead(&groups, nodes) {
                groups[group as usize].leader = Some(to);
            } else {
                return groups;
            }
        }
        panic!("the planner never settled");
    }

    fn spreads_within_one(groups: &[GroupView], nodes: &BTreeSet<NodeId>, leaders: bool) -> bool {
        let load = counts(groups, nodes, leaders);
        load.values().max().unwrap() - load.values().min().unwrap() <= 1
    }

    #[test]
    fn growing_from_three_to_five_nodes_spreads_replicas_and_leaders() {
        let nodes: BTreeSet<NodeId> = (1..=5).collect();
        let groups = settle(placed(3, 16), &nodes);
        assert!(spreads_within_one(&groups, &nodes, false), "{groups:?}");
        assert!(spreads_within_one(&groups, &nodes, true), "{groups:?}");
        assert!(groups.iter().all(|g| g.voters.len() == 3));
        assert!(groups.iter().all(|g| g.voters.contains(&g.leader.unwrap())));
    }

    #[test]
    fn a_drained_node_keeps_no_replica_and_the_rest_stay_even() {
        let nodes: BTreeSet<NodeId> = (1..=5).collect();
        let mut groups = placed(5, 16);
        while let Some(step) = drain(&groups, &nodes, 5) {
            assert_ne!(step.to, 5);
            let group = &mut groups[step.group as usize];
            assert!(!group.voters.contains(&step.to), "moved onto a replica");
            group.voters.remove(&step.from);
            group.voters.insert(step.to);
            if group.leader == Some(step.from) {
                group.leader = Some(step.to);
            }
        }
        assert!(groups
            .iter()
            .all(|g| !g.voters.contains(&5) && g.voters.len() == 3));
        let staying: BTreeSet<NodeId> = (1..=4).collect();
        let groups = settle(groups, &staying);
        assert!(spreads_within_one(&groups, &staying, false));
        assert!(spreads_within_one(&groups, &staying, true));
    }

    #[test]
    fn an_even_cluster_needs_no_move() {
        let nodes: BTreeSet<NodeId> = (1..=3).collect();
        let groups = placed(3, 16);
        assert_eq!(spread(&groups, &nodes), None);
        assert_eq!(lead(&groups, &nodes), None);
    }
}
