//! Keys that retire: each of the run's `keys` slots moves on to a fresh key after a number of
//! operations, as Jepsen's independent keys do. A long run then checks many short histories
//! instead of a few long ones: the linearizability search stays small, and a list or set read
//! returns hundreds of elements, not the whole run's.

use std::sync::atomic::{AtomicU64, Ordering};

/// The keys in use, shared by the client threads.
pub struct KeyRotation {
    slots: usize,
    /// Slots that retire together (the lists of one hash tag, which one transaction spans).
    together: usize,
    ops_per_key: u64,
    /// Operations started per group of `together` slots.
    started: Vec<AtomicU64>,
    /// The highest generation handed out.
    highest: AtomicU64,
}

impl KeyRotation {
    /// `slots` slots (a multiple of `together`), each group of `together` moving on after
    /// `ops_per_key` operations.
    pub fn new(slots: usize, together: usize, ops_per_key: u64) -> KeyRotation {
        assert!(together > 0 && slots.is_multiple_of(together) && ops_per_key > 0);
        KeyRotation {
            slots,
            together,
            ops_per_key,
            started: (0..slots / together).map(|_| AtomicU64::new(0)).collect(),
            highest: AtomicU64::new(0),
        }
    }

    /// The key for the next operation on `slot`: generation `g` of slot `s` is key
    /// `g * slots + s`, so a group of slots stays one aligned run of keys.
    pub fn next(&self, slot: usize) -> usize {
        let started = self.started[slot / self.together].fetch_add(1, Ordering::Relaxed);
        let generation = started / self.ops_per_key;
        self.highest.fetch_max(generation, Ordering::Relaxed);
        generation as usize * self.slots + slot
    }

    /// Every key handed out so far (and the rest of its generation): the final reads and
    /// writes visit them all.
    pub fn used(&self) -> std::ops::Range<usize> {
        0..(self.highest.load(Ordering::Relaxed) as usize + 1) * self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_moves_to_a_fresh_key_after_its_operations() {
        let keys = KeyRotation::new(8, 1, 3);
        let slot3: Vec<usize> = (0..7).map(|_| keys.next(3)).collect();
        assert_eq!(slot3, [3, 3, 3, 11, 11, 11, 19]);
        assert_eq!(keys.next(0), 0, "slots rotate on their own");
        assert_eq!(keys.used(), 0..24);
    }

    #[test]
    fn slots_that_retire_together_share_a_count_and_stay_aligned() {
        let keys = KeyRotation::new(8, 4, 2);
        assert_eq!([keys.next(0), keys.next(3), keys.next(1)], [0, 3, 9]);
        // A group's keys stay within one aligned run of four.
        let key = keys.next(2);
        assert_eq!((key / 4 * 4, key), (8, 10));
        assert_eq!(keys.next(4), 4, "the other group has its own count");
    }
}
