//! The newest entries of one group's log, kept in memory in front of RocksDB.
//!
//! Appends, truncations and purges are queued for the log writer thread (see `log_writer`), so
//! RocksDB lags behind what openraft has been told. The tail makes the log readable at once all
//! the same: it holds every entry not yet written, plus a bounded run of recently written ones
//! (so applying and replicating a fresh entry does not read it back from RocksDB).
//!
//! The rule for reads: index `i` is answered from the tail when the tail holds it; otherwise
//! from RocksDB only below the *floor*, the lowest index any queued, unwritten operation
//! changes; at or above the floor RocksDB may still hold entries a queued truncation removed,
//! and the tail alone is the truth. Appends only ever extend the log right after its last entry
//! (after a truncation if need be), so the tail is one contiguous run of indices.

use std::collections::VecDeque;
use std::ops::Range;

use openraft::entry::RaftEntry;

use crate::request::entry_bytes;
use crate::typ::Entry;

/// Written entries beyond this many are dropped from the tail, oldest first.
///
/// Enough for every entry of one fsync of a busy group to still be here when it applies: with
/// 256, 50 clients pipelining 16 SETs to one key (one group, ~600 entries an fsync) had their
/// state machine read most entries back from RocksDB, 40% of its apply time.
const KEEP_WRITTEN_ENTRIES: usize = 4096;
/// Written entries are also dropped while the tail holds more than this many bytes of them.
const KEEP_WRITTEN_BYTES: usize = 1 << 20;

/// Sequence number of one queued operation of a group, in the order they were queued.
pub(crate) type Seq = u64;

struct Cached {
    /// The operation that put the entry here; it is in RocksDB once that one is written.
    seq: Seq,
    bytes: usize,
    entry: Entry,
}

/// One group's in-memory log tail.
#[derive(Default)]
pub(crate) struct LogTail {
    /// Contiguous entries, oldest first.
    entries: VecDeque<Cached>,
    bytes: usize,
    next_seq: Seq,
    /// Queued operations not yet written, oldest first: their sequence number and the lowest
    /// log index they change.
    unwritten: VecDeque<(Seq, u64)>,
}

/// Where a read of the log finds its entries.
pub(crate) struct TailRead {
    /// Read this range from RocksDB first.
    pub from_db: Range<u64>,
    /// Then these, which follow the RocksDB part.
    pub cached: Vec<Entry>,
}

impl LogTail {
    /// Records entries appended after the log's last entry; returns the append's sequence.
    pub(crate) fn append(&mut self, entries: &[Entry]) -> Seq {
        let seq = self.next();
        let Some(first) = entries.first().map(|e| e.index()) else {
            return seq;
        };
        // Anything at or after `first` is replaced; a gap (the log restarted after a snapshot)
        // leaves nothing the new entries would be contiguous with.
        self.remove_from(first);
        if self.last_index().is_some_and(|last| last + 1 != first) {
            self.remove_from(0);
        }
        for entry in entries {
            let bytes = entry_bytes(entry);
            self.bytes += bytes;
            self.entries.push_back(Cached {
                seq,
                bytes,
                entry: entry.clone(),
            });
        }
        self.unwritten.push_back((seq, first));
        seq
    }

    /// Records the removal of every entry after `last_kept` (None: all of them).
    pub(crate) fn truncate_after(&mut self, last_kept: Option<u64>) -> Seq {
        let seq = self.next();
        let first_removed = last_kept.map_or(0, |i| i + 1);
        self.remove_from(first_removed);
        self.unwritten.push_back((seq, first_removed));
        seq
    }

    /// Records the removal of every entry up to `index`, inclusive. Nobody reads purged
    /// entries, so RocksDB may keep them until the purge is written.
    pub(crate) fn purge(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|c| c.entry.index() <= index)
        {
            self.pop_front();
        }
    }

    /// The queued operations up to `seq` are in RocksDB now.
    pub(crate) fn written(&mut self, seq: Seq) {
        while self.unwritten.front().is_some_and(|&(s, _)| s <= seq) {
            self.unwritten.pop_front();
        }
        while self.entries.front().is_some_and(|c| c.seq <= seq)
            && (self.entries.len() > KEEP_WRITTEN_ENTRIES || self.bytes > KEEP_WRITTEN_BYTES)
        {
            self.pop_front();
        }
    }

    /// Splits a read of `range` between RocksDB and the tail.
    pub(crate) fn read(&self, range: Range<u64>) -> TailRead {
        let floor = self
            .unwritten
            .iter()
            .map(|&(_, low)| low)
            .min()
            .unwrap_or(u64::MAX);
        let db_end = self.first_index().unwrap_or(u64::MAX).min(floor);
        let from_db = range.start..range.end.min(db_end);
        let cached = match self.first_index() {
            Some(lo) => {
                let start = range.start.max(lo);
                self.entries
                    .iter()
                    .skip((start - lo) as usize)
                    .take_while(|c| c.entry.index() < range.end)
                    .map(|c| c.entry.clone())
                    .collect()
            }
            None => Vec::new(),
        };
        TailRead { from_db, cached }
    }

    fn next(&mut self) -> Seq {
        self.next_seq += 1;
        self.next_seq
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|c| c.entry.index())
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|c| c.entry.index())
    }

    fn remove_from(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|c| c.entry.index() >= index)
        {
            let removed = self.entries.pop_back().expect("checked non-empty");
            self.bytes -= removed.bytes;
        }
    }

    fn pop_front(&mut self) {
        if let Some(removed) = self.entries.pop_front() {
            self.bytes -= removed.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::blank_ent;

    use super::*;
    use crate::typ::TypeConfig;

    fn entries(term: u64, indexes: Range<u64>) -> Vec<Entry> {
        indexes
            .map(|i| blank_ent::<TypeConfig>(term, 1, i))
            .collect()
    }

    fn cached(read: &TailRead) -> Vec<(u64, u64)> {
        read.cached
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.index()))
            .collect()
    }

    #[test]
    fn unwritten_entries_are_read_from_the_tail_only() {
        let mut tail = LogTail::default();
        tail.append(&entries(1, 1..4));
        let read = tail.read(1..10);
        assert!(read.from_db.is_empty(), "{:?}", read.from_db);
        assert_eq!(cached(&read), [(1, 1), (1, 2), (1, 3)]);
    }

    #[test]
    fn written_entries_below_the_tail_come_from_the_db() {
        let mut tail = LogTail::default();
        let seq = tail.append(&entries(1, 1..(KEEP_WRITTEN_ENTRIES as u64 + 11)));
        tail.written(seq);
        let read = tail.read(1..20);
        assert_eq!(read.from_db, 1..11);
        assert_eq!(read.cached.first().map(|e| e.index()), Some(11));
        assert_eq!(read.cached.len(), 9);
    }

    #[test]
    fn a_queued_truncation_hides_the_entries_the_db_still_has() {
        let mut tail = LogTail::default();
        let seq = tail.append(&entries(1, 1..(KEEP_WRITTEN_ENTRIES as u64 + 11)));
        tail.written(seq);
        // Entries 1..=10 now live only in the DB; truncate after 5 is queued, not written.
        let truncation = tail.truncate_after(Some(5));
        let read = tail.read(1..20);
        assert_eq!(read.from_db, 1..6, "the DB's 6..=10 are truncated");
        assert!(read.cached.is_empty());
        tail.append(&entries(2, 6..8));
        let read = tail.read(1..20);
        assert_eq!(read.from_db, 1..6);
        assert_eq!(cached(&read), [(2, 6), (2, 7)]);
        tail.written(truncation);
        assert_eq!(
            tail.read(1..20).from_db,
            1..6,
            "the re-append is still queued"
        );
    }

    #[test]
    fn overwriting_appends_replace_the_cached_entries() {
        let mut tail = LogTail::default();
        tail.append(&entries(1, 1..6));
        tail.truncate_after(Some(2));
        tail.append(&entries(2, 3..5));
        assert_eq!(cached(&tail.read(0..10)), [(1, 1), (1, 2), (2, 3), (2, 4)]);
    }

    #[test]
    fn written_entries_are_kept_up_to_the_bound_and_unwritten_ones_always() {
        let mut tail = LogTail::default();
        let first = tail.append(&entries(1, 1..(KEEP_WRITTEN_ENTRIES as u64 * 2)));
        tail.written(first - 1);
        assert_eq!(
            tail.entries.len(),
            KEEP_WRITTEN_ENTRIES * 2 - 1,
            "unwritten"
        );
        tail.written(first);
        assert_eq!(tail.entries.len(), KEEP_WRITTEN_ENTRIES);
        let bytes: usize = tail.entries.iter().map(|c| c.bytes).sum();
        assert_eq!(tail.bytes, bytes);
    }

    #[test]
    fn a_gap_after_a_snapshot_restarts_the_tail() {
        let mut tail = LogTail::default();
        tail.append(&entries(1, 1..4));
        tail.purge(3);
        tail.append(&entries(1, 100..102));
        let read = tail.read(0..200);
        assert_eq!(cached(&read), [(1, 100), (1, 101)]);
        assert_eq!(read.from_db, 0..1, "below the queued append of 1..=3");
    }
}
