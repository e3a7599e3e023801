//! The shapes of network partitions, as the directed links they cut. A link from `a` to `b`
//! is cut by dropping, in `b`'s namespace, what `a` sends; cutting one direction of a TCP
//! connection stops both, since its acknowledgements are lost.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::net::Link;

/// Both directions of every link between `side` and `rest`.
pub fn between(side: &[usize], rest: &[usize]) -> Vec<Link> {
    side.iter()
        .flat_map(|&a| {
            rest.iter()
                .flat_map(move |&b| [Link { from: a, to: b }, Link { from: b, to: a }])
        })
        .collect()
}

/// A random minority of the `n` nodes cut off from the rest, so that a quorum survives;
/// returns the minority and the links.
pub fn random_halves(n: usize, rng: &mut SmallRng) -> (Vec<usize>, Vec<Link>) {
    let mut nodes: Vec<usize> = (1..=n).collect();
    nodes.shuffle(rng);
    let minority = rng.random_range(1..=(n - 1) / 2);
    let (side, rest) = nodes.split_at(minority);
    let mut side = side.to_vec();
    side.sort_unstable();
    let links = between(&side, rest);
    (side, links)
}

/// `node` cut off from every other of the `n` nodes.
pub fn isolate(n: usize, node: usize) -> Vec<Link> {
    let rest: Vec<usize> = (1..=n).filter(|&other| other != node).collect();
    between(&[node], &rest)
}

/// Jepsen's majorities ring: the nodes in a random ring, each hearing from a majority
/// (itself and its nearest neighbours) but no two from the same majority, so that every node
/// can believe it is in the majority. Returns the ring and the links.
pub fn majorities_ring(n: usize, rng: &mut SmallRng) -> (Vec<usize>, Vec<Link>) {
    let mut ring: Vec<usize> = (1..=n).collect();
    ring.shuffle(rng);
    let others_heard = n / 2;
    // Neighbours heard on each side; with an odd count, one more successor than predecessor.
    let before = others_heard / 2;
    let after = others_heard - before;
    let mut links = Vec::new();
    for (i, &to) in ring.iter().enumerate() {
        for (j, &from) in ring.iter().enumerate() {
            let ahead = (j + n - i) % n;
            let heard = ahead == 0 || ahead <= after || n - ahead <= before;
            if !heard {
                links.push(Link { from, to });
            }
        }
    }
    (ring, links)
}

/// A bridge: the other nodes split into two sides that cannot reach each other, and one node
/// that reaches both. Returns the bridge node and the links.
pub fn bridge(n: usize, rng: &mut SmallRng) -> (usize, Vec<Link>) {
    let mut nodes: Vec<usize> = (1..=n).collect();
    nodes.shuffle(rng);
    let (bridge, rest) = nodes.split_first().expect("at least one node");
    let (left, right) = rest.split_at(rest.len() / 2);
    (*bridge, between(left, right))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::SeedableRng;

    use super::*;

    /// Which nodes `node` still hears from.
    fn heard_by(n: usize, links: &[Link], node: usize) -> BTreeSet<usize> {
        (1..=n)
            .filter(|&from| !links.contains(&Link { from, to: node }))
            .collect()
    }

    #[test]
    fn a_ring_gives_every_node_a_different_majority() {
        for n in [3, 4, 5, 7] {
            for seed in 0..20 {
                let (ring, links) = majorities_ring(n, &mut SmallRng::seed_from_u64(seed));
                assert_eq!(ring.len(), n);
                let views: BTreeSet<BTreeSet<usize>> =
                    (1..=n).map(|node| heard_by(n, &links, node)).collect();
                assert_eq!(views.len(), n, "two nodes share a majority: {views:?}");
                for view in &views {
                    assert_eq!(view.len(), n / 2 + 1, "not a majority: {view:?}");
                }
            }
        }
    }

    #[test]
    fn halves_leave_a_quorum_connected() {
        for n in [3, 5] {
            for seed in 0..20 {
                let (side, links) = random_halves(n, &mut SmallRng::seed_from_u64(seed));
                assert!(!side.is_empty() && side.len() <= (n - 1) / 2);
                let rest: Vec<usize> = (1..=n).filter(|x| !side.contains(x)).collect();
                for &node in &rest {
                    let heard = heard_by(n, &links, node);
                    assert_eq!(heard, rest.iter().copied().collect::<BTreeSet<_>>());
                }
            }
        }
    }

    #[test]
    fn a_bridge_hears_both_sides_which_do_not_hear_each_other() {
        for n in [3, 5] {
            let (bridge, links) = bridge(n, &mut SmallRng::seed_from_u64(n as u64));
            assert_eq!(heard_by(n, &links, bridge).len(), n);
            let cut: BTreeSet<usize> = links.iter().map(|l| l.to).collect();
            assert_eq!(cut.len(), n - 1, "every non-bridge node loses someone");
            assert!(!cut.contains(&bridge));
        }
    }

    #[test]
    fn an_isolated_node_hears_nobody_and_nobody_hears_it() {
        let links = isolate(5, 2);
        assert_eq!(heard_by(5, &links, 2), BTreeSet::from([2]));
        for other in [1, 3, 4, 5] {
            assert!(!heard_by(5, &links, other).contains(&2));
        }
    }
}
