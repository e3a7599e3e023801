//! The sorted set: members with scores, ordered by (score, member).

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;

use indexmap::IndexMap;

use crate::blob::Blob;
use crate::value::Hasher;

/// A score in the order Redis sorts them: by value, with `-0` equal to `0`. NaN is never stored
/// (every command that could produce one fails instead).
#[derive(Clone, Copy, Debug)]
pub struct Score(pub f64);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// One end of a score range (`(1.5` is exclusive).
#[derive(Clone, Copy, Debug)]
pub struct ScoreBound {
    pub value: f64,
    pub exclusive: bool,
}

/// One end of a lexicographic range (`[a`, `(a`, `-`, `+`).
#[derive(Clone, Debug)]
pub enum LexBound {
    NegInf,
    PosInf,
    Inclusive(Vec<u8>),
    Exclusive(Vec<u8>),
}

/// A sorted set: a member → score map (O(1) ZSCORE, deterministic random access) and the
/// (score, member) order.
///
/// Rank queries walk the order, so ZRANK and deep ZRANGE offsets cost O(rank) where Redis's
/// skiplist costs O(log n).
#[derive(Clone, Debug, Default)]
pub struct SortedSet {
    scores: IndexMap<Blob, f64, Hasher>,
    order: BTreeSet<(Score, Blob)>,
}

impl SortedSet {
    /// Creates an empty sorted set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Returns true if there are no members.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Sets the score of `member`; returns the previous score.
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        // Redis stores small sorted sets as text, where -0 reads back as 0.
        let score = if score == 0.0 { 0.0 } else { score };
        match self.scores.get_mut(member) {
            Some(old) => {
                let previous = *old;
                if Score(previous) != Score(score) || previous.to_bits() != score.to_bits() {
                    let blob = Blob::new(member);
                    self.order.remove(&(Score(previous), blob.clone()));
                    self.order.insert((Score(score), blob));
                    *old = score;
                }
                Some(previous)
            }
            None => {
                let blob = Blob::new(member);
                self.scores.insert(blob.clone(), score);
                self.order.insert((Score(score), blob));
                None
            }
        }
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let (blob, score) = self.scores.swap_remove_entry(member)?;
        self.order.remove(&(Score(score), blob));
        Some(score)
    }

    /// Members in order, lowest score first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Blob, f64)> {
        self.order.iter().map(|(s, m)| (m, s.0))
    }

    /// The member at `index` of the insertion-ordered map: deterministic random access for
    /// ZRANDMEMBER.
    pub fn get_index(&self, index: usize) -> Option<(&Blob, f64)> {
        self.scores.get_index(index).map(|(m, s)| (m, *s))
    }

    /// The 0-based rank of `member`, lowest score first.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        let key = (Score(score), Blob::new(member));
        Some(self.order.range(..key).count())
    }

    /// Members with a score within `min..max`, lowest first.
    pub fn range_by_score(
        &self,
        min: ScoreBound,
        max: ScoreBound,
    ) -> impl DoubleEndedIterator<Item = (&Blob, f64)> {
        let start = (Score(min.value), Blob::default());
        self.order
            .range((Bound::Included(start), Bound::Unbounded))
            .skip_while(move |(s, _)| min.exclusive && s.0 <= min.value)
            .take_while(move |(s, _)| {
                if max.exclusive {
                    s.0 < max.value
                } else {
                    s.0 <= max.value
                }
            })
            .map(|(s, m)| (m, s.0))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Members within a lexicographic range (meaningful when all scores are equal), lowest first.
    pub fn range_by_lex<'a>(
        &'a self,
        min: &'a LexBound,
        max: &'a LexBound,
    ) -> impl DoubleEndedIterator<Item = (&'a Blob, f64)> + 'a {
        self.order
            .iter()
            .skip_while(move |(_, m)| !lex_gte_min(m, min))
            .take_while(move |(_, m)| lex_lte_max(m, max))
            .map(|(s, m)| (m, s.0))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// Returns true if `member` is at or above the lower bound `min`.
pub fn lex_gte_min(member: &[u8], min: &LexBound) -> bool {
    match min {
        LexBound::NegInf => true,
        LexBound::PosInf => false,
        LexBound::Inclusive(v) => member >= v.as_slice(),
        LexBound::Exclusive(v) => member > v.as_slice(),
    }
}

/// Returns true if `member` is at or below the upper bound `max`.
pub fn lex_lte_max(member: &[u8], max: &LexBound) -> bool {
    match max {
        LexBound::NegInf => false,
        LexBound::PosInf => true,
        LexBound::Inclusive(v) => member <= v.as_slice(),
        LexBound::Exclusive(v) => member < v.as_slice(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_score_then_member() {
        let mut z = SortedSet::new();
        z.insert(b"b", 1.0);
        z.insert(b"a", 1.0);
        z.insert(b"c", 0.5);
        let order: Vec<_> = z.iter().map(|(m, _)| m.to_vec()).collect();
        assert_eq!(order, [b"c".to_vec(), b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(z.rank(b"b"), Some(2));
        z.insert(b"c", 2.0);
        assert_eq!(z.rank(b"c"), Some(2));
        assert_eq!(z.remove(b"a"), Some(1.0));
        assert_eq!(z.len(), 2);
    }

    #[test]
    fn score_ranges() {
        let mut z = SortedSet::new();
        for (i, m) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            z.insert(*m, i as f64);
        }
        let min = ScoreBound {
            value: 1.0,
            exclusive: true,
        };
        let max = ScoreBound {
            value: 3.0,
            exclusive: false,
        };
        let got: Vec<_> = z
            .range_by_score(min, max)
            .map(|(m, _)| m.to_vec())
            .collect();
        assert_eq!(got, [b"c".to_vec(), b"d".to_vec()]);
    }
}
