//! What `autocache admin` does next to even out a cluster: pure functions from the groups'
//! current replicas to one move, so every step re-reads the cluster and a rerun resumes.

use std::collections::{BTreeMap, BTreeSet};

use raft::{GroupId, NodeId};

/// One group as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupView {
    pub group: GroupId,
    pub leader: Option<NodeId>,
    pub voters: BTreeSet<NodeId>,
    /// What the group costs the nodes that replicate (or lead) it, relative to the others:
    /// 1 for every group when plans even out counts, measured load for `rebalance`
    /// (see [`weigh`]).
    pub weight: f64,
}

/// A replica of `group` to move from one node to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaMove {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
}

/// One change to one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Move(ReplicaMove),
    Lead { group: GroupId, to: NodeId },
}

/// A move is made only if it leaves the lighter node lighter, by this much, than the heavier
/// one was: with unit weights, nodes within one group of each other are even. It also makes
/// every move lower the sum of squared loads by a fixed amount, so planning always ends.
const SLACK: f64 = 0.25;

/// What a group weighs given its write rate and memory: a third fixed cost, a third its share
/// of the writes, a third its share of the memory, each share relative to the average group
/// (so the average group weighs 1, and an idle, empty cluster's groups all weigh 1).
pub fn weigh(writes_per_sec: f64, bytes: f64, mean_writes: f64, mean_bytes: f64) -> f64 {
    let share = |value: f64, mean: f64| if mean > 0.0 { value / mean } else { 1.0 };
    (1.0 + share(writes_per_sec, mean_writes) + share(bytes, mean_bytes)) / 3.0
}

/// How much each of `nodes` carries: the weights of the groups it replicates (or leads, with
/// `leaders`).
fn loads(groups: &[GroupView], nodes: &BTreeSet<NodeId>, leaders: bool) -> BTreeMap<NodeId, f64> {
    let mut loads: BTreeMap<NodeId, f64> = nodes.iter().map(|&node| (node, 0.0)).collect();
    for group in groups {
        let holders: Vec<NodeId> = if leaders {
            group.leader.into_iter().collect()
        } else {
            group.voters.iter().copied().collect()
        };
        for node in holders {
            if let Some(load) = loads.get_mut(&node) {
                *load += group.weight;
            }
        }
    }
    loads
}

/// `loads` heaviest first (ties by node id).
fn heaviest_first(loads: &BTreeMap<NodeId, f64>) -> Vec<(NodeId, f64)> {
    let mut by_load: Vec<(NodeId, f64)> = loads.iter().map(|(n, l)| (*n, *l)).collect();
    by_load.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    by_load
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
    let load = loads(groups, &staying, false);
    let mut held: Vec<&GroupView> = groups
        .iter()
        .filter(|group| group.voters.contains(&leaving))
        .collect();
    held.sort_by_key(|group| group.leader == Some(leaving));
    held.into_iter().find_map(|group| {
        let to = load
            .iter()
            .filter(|(node, _)| !group.voters.contains(node))
            .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(b.0)))?
            .0;
        Some(ReplicaMove {
            group: group.group,
            from: leaving,
            to: *to,
        })
    })
}

/// The next move that evens out replica loads over `nodes`: the heaviest node gives the
/// lightest a group it lacks (one it does not lead if it can, of the weight that evens the
/// two best), or None once no move would make them more even.
pub fn spread(groups: &[GroupView], nodes: &BTreeSet<NodeId>) -> Option<ReplicaMove> {
    spread_except(groups, nodes, &BTreeSet::new())
}

fn spread_except(
    groups: &[GroupView],
    nodes: &BTreeSet<NodeId>,
    busy: &BTreeSet<GroupId>,
) -> Option<ReplicaMove> {
    let load = loads(groups, nodes, false);
    let (&to, &lightest) = load
        .iter()
        .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(b.0)))?;
    for (from, heaviest) in heaviest_first(&load) {
        let gap = heaviest - lightest;
        let best = groups
            .iter()
            .filter(|group| !busy.contains(&group.group))
            .filter(|group| group.voters.contains(&from) && !group.voters.contains(&to))
            .filter(|group| lightest + group.weight + SLACK < heaviest)
            .min_by(|a, b| {
                let fit = |g: &GroupView| (g.weight - gap / 2.0).abs();
                (a.leader == Some(from))
                    .cmp(&(b.leader == Some(from)))
                    .then(fit(a).total_cmp(&fit(b)))
                    .then(a.group.cmp(&b.group))
            });
        if let Some(group) = best {
            return Some(ReplicaMove {
                group: group.group,
                from,
                to,
            });
        }
    }
    None
}

/// The next leadership transfer that evens out the leader loads of `nodes`: a group of the
/// node leading most goes to the voter that ends up most even with it, or None once no
/// transfer would make them more even.
pub fn lead(groups: &[GroupView], nodes: &BTreeSet<NodeId>) -> Option<(GroupId, NodeId)> {
    lead_except(groups, nodes, &BTreeSet::new())
}

fn lead_except(
    groups: &[GroupView],
    nodes: &BTreeSet<NodeId>,
    busy: &BTreeSet<GroupId>,
) -> Option<(GroupId, NodeId)> {
    let load = loads(groups, nodes, true);
    for (from, heaviest) in heaviest_first(&load) {
        let mut best: Option<(GroupId, NodeId, f64)> = None;
        for group in groups
            .iter()
            .filter(|group| group.leader == Some(from) && !busy.contains(&group.group))
        {
            for voter in &group.voters {
                let Some(&lighter) = load.get(voter) else {
                    continue;
                };
                if lighter + group.weight + SLACK >= heaviest {
                    continue;
                }
                let unevenness = ((heaviest - group.weight) - (lighter + group.weight)).abs();
                if best.is_none_or(|(_, _, was)| unevenness < was) {
                    best = Some((group.group, *voter, unevenness));
                }
            }
        }
        if let Some((group, to, _)) = best {
            return Some((group, to));
        }
    }
    None
}

/// Up to `budget` changes to distinct groups that may run at once: replica moves while any
/// is due (planned one after the other on the layout the earlier ones leave), else leadership
/// transfers. Empty once the nodes are even.
pub fn batch(groups: &[GroupView], nodes: &BTreeSet<NodeId>, budget: usize) -> Vec<Step> {
    let mut layout = groups.to_vec();
    let mut busy = BTreeSet::new();
    let mut steps = Vec::new();
    while steps.len() < budget {
        let Some(step) = spread_except(&layout, nodes, &busy) else {
            break;
        };
        let Some(group) = layout.iter_mut().find(|g| g.group == step.group) else {
            break;
        };
        group.voters.remove(&step.from);
        group.voters.insert(step.to);
        if group.leader == Some(step.from) {
            group.leader = Some(step.to);
        }
        busy.insert(step.group);
        steps.push(Step::Move(step));
    }
    if !steps.is_empty() {
        return steps;
    }
    while steps.len() < budget {
        let Some((group, to)) = lead_except(&layout, nodes, &busy) else {
            break;
        };
        if let Some(view) = layout.iter_mut().find(|g| g.group == group) {
            view.leader = Some(to);
        }
        busy.insert(group);
        steps.push(Step::Lead { group, to });
    }
    steps
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
                    weight: 1.0,
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
        let load = loads(groups, nodes, leaders);
        let max = load.values().copied().fold(f64::MIN, f64::max);
        let min = load.values().copied().fold(f64::MAX, f64::min);
        max - min <= 1.0
    }

    fn leads(groups: &[GroupView], node: NodeId) -> usize {
        groups.iter().filter(|g| g.leader == Some(node)).count()
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

    #[test]
    fn the_average_group_weighs_one_and_an_idle_one_too() {
        assert_eq!(weigh(0.0, 0.0, 0.0, 0.0), 1.0);
        assert_eq!(weigh(100.0, 50.0, 100.0, 50.0), 1.0);
        // Ten times the average write rate, average memory: (1 + 10 + 1) / 3.
        assert_eq!(weigh(1000.0, 50.0, 100.0, 50.0), 4.0);
    }

    #[test]
    fn the_leader_of_a_hot_group_leads_fewer_others() {
        let nodes: BTreeSet<NodeId> = (1..=3).collect();
        let mut groups = placed(3, 16);
        groups[0].weight = 5.0;
        let hot_leader = groups[0].leader.unwrap();
        let groups = settle(groups, &nodes);
        let hot_leader_now = groups[0].leader.unwrap();
        let others: Vec<usize> = nodes
            .iter()
            .filter(|&&n| n != hot_leader_now)
            .map(|&n| leads(&groups, n))
            .collect();
        assert!(
            others
                .iter()
                .all(|&count| leads(&groups, hot_leader_now) + 2 < count),
            "hot group led by {hot_leader_now} (was {hot_leader}): {groups:?}"
        );
        // No node carries more than the hot group's weight over another.
        let load = loads(&groups, &nodes, true);
        let max = load.values().copied().fold(f64::MIN, f64::max);
        let min = load.values().copied().fold(f64::MAX, f64::min);
        assert!(max - min <= 5.0, "{load:?}");
    }

    #[test]
    fn planning_ends_whatever_the_weights() {
        let nodes: BTreeSet<NodeId> = (1..=5).collect();
        let mut groups = placed(3, 16);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for group in &mut groups {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            group.weight = 1.0 / 3.0 + (x % 1000) as f64 / 100.0;
        }
        let groups = settle(groups, &nodes);
        assert!(groups.iter().all(|g| g.voters.len() == 3));
        assert!(groups.iter().all(|g| g.voters.contains(&g.leader.unwrap())));
    }

    #[test]
    fn a_batch_changes_distinct_groups_within_its_budget() {
        let nodes: BTreeSet<NodeId> = (1..=5).collect();
        let mut groups = placed(3, 16);
        let mut batches = 0;
        loop {
            let steps = batch(&groups, &nodes, 3);
            if steps.is_empty() {
                break;
            }
            batches += 1;
            assert!(steps.len() <= 3);
            let touched: BTreeSet<GroupId> = steps
                .iter()
                .map(|step| match step {
                    Step::Move(m) => m.group,
                    Step::Lead { group, .. } => *group,
                })
                .collect();
            assert_eq!(touched.len(), steps.len(), "a group twice in {steps:?}");
            for step in steps {
                match step {
                    Step::Move(m) => {
                        let group = &mut groups[m.group as usize];
                        assert!(group.voters.remove(&m.from) && group.voters.insert(m.to));
                        if group.leader == Some(m.from) {
                            group.leader = Some(m.to);
                        }
                    }
                    Step::Lead { group, to } => {
                        assert!(groups[group as usize].voters.contains(&to));
                        groups[group as usize].leader = Some(to);
                    }
                }
            }
            assert!(batches < 100, "batches never end");
        }
        assert!(spreads_within_one(&groups, &nodes, false), "{groups:?}");
        assert!(spreads_within_one(&groups, &nodes, true), "{groups:?}");
        // 3 -> 5 nodes moves 19 replicas: three at a time takes 7 batches, plus transfers.
        assert!(batches < 19, "{batches} batches");
    }
}
