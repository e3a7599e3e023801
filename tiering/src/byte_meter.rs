//! An estimate of the memory a keyspace's keys and values use, for the load figures gossip
//! publishes and rebalancing weighs.
//!
//! Counting exactly would mean every command that changes a value in place reports the size
//! change; instead the meter sweeps the keyspace's chunk tables a few at a time, remembers
//! each chunk's keys and bytes, and scales the bytes per key it saw to the keys the keyspace
//! holds now. A step goes on until it measured its budget of entries or went round once (an
//! empty table costs next to nothing), so a small keyspace is measured whole at every step.

use crate::keyspace::{Entry, Keyspace, CHUNK_COUNT};

/// Per chunk: the keys and bytes seen when it was last visited, and where the sweep goes on.
#[derive(Debug, Default)]
pub struct ByteMeter {
    chunks: Vec<(u64, u64)>,
    next: usize,
}

/// The memory of one entry: the boxed entry, its table bucket, the key beyond its inline
/// bytes, and the value (as MEMORY USAGE reports it).
pub fn entry_usage(entry: &Entry) -> usize {
    std::mem::size_of::<Entry>() + 16 + entry.key.heap_size() + entry.value.memory_usage()
}

impl ByteMeter {
    /// Visits the next chunks of `keyspace` until `budget` entries were measured (or every
    /// chunk once), then returns the estimate.
    pub fn step(&mut self, keyspace: &Keyspace, budget: usize) -> u64 {
        if self.chunks.is_empty() {
            self.chunks = vec![(0, 0); CHUNK_COUNT];
        }
        let mut visited = 0;
        for _ in 0..CHUNK_COUNT {
            let chunk = self.next;
            self.next = (self.next + 1) % CHUNK_COUNT;
            let (mut keys, mut bytes) = (0u64, 0u64);
            for entry in keyspace.chunk_raw_entries(chunk) {
                keys += 1;
                bytes += entry_usage(entry) as u64;
            }
            self.chunks[chunk] = (keys, bytes);
            visited += keys as usize;
            if visited >= budget {
                break;
            }
        }
        self.estimate(keyspace.len())
    }

    /// The bytes of `len` keys at the bytes per key seen so far.
    pub fn estimate(&self, len: usize) -> u64 {
        let (keys, bytes) = self
            .chunks
            .iter()
            .fold((0u64, 0u64), |(k, b), (keys, bytes)| (k + keys, b + bytes));
        if keys == 0 {
            return 0;
        }
        (bytes as f64 / keys as f64 * len as f64).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn string(len: usize) -> Value {
        Value::string(&vec![b'x'; len])
    }

    #[test]
    fn a_full_sweep_measures_every_key_and_later_keys_are_scaled() {
        let mut ks = Keyspace::new(0..crate::SLOT_COUNT);
        for i in 0..2000 {
            ks.insert(format!("key:{i}").as_bytes(), string(1000), 0);
        }
        let exact: u64 = ks.raw_entries().map(|e| entry_usage(e) as u64).sum();
        let mut meter = ByteMeter::default();
        let mut estimate = 0;
        // Each step measures at least 100 entries: 21 steps go round.
        for _ in 0..2000 / 100 + 1 {
            estimate = meter.step(&ks, 100);
        }
        assert_eq!(estimate, exact, "a full sweep counts every entry");
        assert!(exact > 2000 * 1000, "values counted: {exact}");
        // Twice the keys of the same size, before the sweep revisits them: scaled.
        for i in 2000..4000 {
            ks.insert(format!("key:{i}").as_bytes(), string(1000), 0);
        }
        let scaled = meter.estimate(ks.len()) as f64;
        let exact: u64 = ks.raw_entries().map(|e| entry_usage(e) as u64).sum();
        assert!(
            (scaled / exact as f64 - 1.0).abs() < 0.01,
            "{scaled} vs {exact}"
        );
        ks.clear();
        assert_eq!(meter.step(&ks, 100), 0, "nothing left");
    }

    #[test]
    fn a_step_stops_at_its_budget() {
        let mut ks = Keyspace::new(0..crate::SLOT_COUNT);
        for i in 0..5000 {
            ks.insert(format!("k{i}").as_bytes(), string(10), 0);
        }
        let mut meter = ByteMeter::default();
        meter.step(&ks, 50);
        let seen: u64 = meter.chunks.iter().map(|c| c.0).sum();
        // Five keys per chunk on average: the step stops within a chunk of its budget.
        assert!((50..80).contains(&seen), "{seen} keys measured");
    }
}
