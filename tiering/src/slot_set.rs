//! A set of hash slots: which slots a group owns.

use std::ops::RangeInclusive;

use crate::slot::{Slot, SLOT_COUNT};

const WORDS: usize = SLOT_COUNT / 64;

/// A set of hash slots, one bit each (2 KiB).
#[derive(Clone, PartialEq, Eq)]
pub struct SlotSet {
    bits: Box<[u64; WORDS]>,
}

impl Default for SlotSet {
    fn default() -> Self {
        SlotSet {
            bits: Box::new([0; WORDS]),
        }
    }
}

impl std::fmt::Debug for SlotSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.ranges()).finish()
    }
}

impl SlotSet {
    /// The slots of `range`.
    pub fn from_range(range: RangeInclusive<Slot>) -> SlotSet {
        let mut set = SlotSet::default();
        for slot in range {
            set.insert(slot);
        }
        set
    }

    pub fn contains(&self, slot: Slot) -> bool {
        let slot = slot as usize;
        slot < SLOT_COUNT && self.bits[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// Adds `slot`; returns false if it was there already. Slots past the last are ignored.
    pub fn insert(&mut self, slot: Slot) -> bool {
        let slot = slot as usize;
        if slot >= SLOT_COUNT {
            return false;
        }
        let had = self.bits[slot / 64] & (1 << (slot % 64)) != 0;
        self.bits[slot / 64] |= 1 << (slot % 64);
        !had
    }

    /// Removes `slot`; returns false if it was not there.
    pub fn remove(&mut self, slot: Slot) -> bool {
        let slot = slot as usize;
        if slot >= SLOT_COUNT {
            return false;
        }
        let had = self.bits[slot / 64] & (1 << (slot % 64)) != 0;
        self.bits[slot / 64] &= !(1 << (slot % 64));
        had
    }

    pub fn len(&self) -> usize {
        self.bits
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&word| word == 0)
    }

    /// The slots, in order.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        (0..SLOT_COUNT as Slot).filter(|&slot| self.contains(slot))
    }

    /// The slots as maximal runs of consecutive slots, in order (as CLUSTER SLOTS lists them).
    pub fn ranges(&self) -> Vec<RangeInclusive<Slot>> {
        let mut ranges: Vec<RangeInclusive<Slot>> = Vec::new();
        for slot in self.iter() {
            match ranges.last_mut() {
                Some(last) if *last.end() + 1 == slot => *last = *last.start()..=slot,
                _ => ranges.push(slot..=slot),
            }
        }
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_removes_and_lists_runs() {
        let mut set = SlotSet::from_range(10..=20);
        assert!(set.contains(10) && set.contains(20) && !set.contains(21));
        assert!(set.insert(16383));
        assert!(!set.insert(16383));
        assert!(set.remove(15));
        assert!(!set.remove(15));
        assert!(!set.insert(16384), "past the last slot");
        assert!(!set.contains(16384));
        assert_eq!(set.len(), 11);
        assert_eq!(set.ranges(), vec![10..=14, 16..=20, 16383..=16383]);
        assert_eq!(format!("{set:?}"), "[10..=14, 16..=20, 16383..=16383]");
        assert!(SlotSet::default().is_empty());
        assert_eq!(SlotSet::from_range(0..=16383).ranges(), vec![0..=16383]);
    }
}
