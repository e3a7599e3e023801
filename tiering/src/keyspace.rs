//! The keys of one slot group: one hash table per slot, the expiry index, and the change log
//! WATCH checks against.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;
use rand::Rng;

use crate::blob::Blob;
use crate::byte_meter::ByteMeter;
use crate::slot::{slot_of, Slot};
use crate::slot_set::SlotSet;
use crate::value::{Hasher, Value};

/// A key, its value and its deadline.
#[derive(Debug)]
pub struct Entry {
    pub key: Blob,
    pub value: Value,
    /// Absolute deadline in Unix milliseconds; 0 means the key never expires.
    expire_at: u64,
}

impl Entry {
    /// The deadline in Unix milliseconds, if the key has one.
    pub fn expire_at(&self) -> Option<u64> {
        (self.expire_at != 0).then_some(self.expire_at)
    }

    fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now_ms
    }
}

/// Counters INFO reports, kept per keyspace under its lock (so counting costs no shared
/// atomics on the hot path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyspaceStats {
    pub hits: u64,
    pub misses: u64,
    /// Changes, as Redis's `dirty` counter.
    pub dirty: u64,
    /// Keys removed by the expiry cycle.
    pub expired: u64,
}

impl std::ops::AddAssign for KeyspaceStats {
    fn add_assign(&mut self, other: Self) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.dirty += other.dirty;
        self.expired += other.expired;
    }
}

/// Buckets of the change index (a power of two). A bucket records the latest change to any of
/// its keys, so a WATCH can fail spuriously when another key of its bucket changed: one in 4096
/// per change, and Redis clients retry aborted transactions anyway.
const CHANGE_BUCKETS: usize = 4096;

/// Which slots a group owns, and which are moving between it and another group.
///
/// A slot moves from group A to group B in steps, each an entry of one group's log: A
/// releases it (from then on A refuses its commands; its keys stay, frozen, in `handoff`), B
/// imports its keys in pages under one import `session` (`arriving`; B does not serve it
/// yet), B adopts it (owns it and serves it), A drops its copy of the keys. A slot that
/// comes back to A is imported and adopted the same way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotState {
    pub owned: SlotSet,
    /// Slots released to another group: slot → that group. Their keys stay until that group
    /// adopted them and they are dropped here; the record stays, so replicas of this group
    /// know where the slot went.
    pub handoff: BTreeMap<Slot, u32>,
    /// Slots being imported, not yet owned: slot → the import's session.
    pub arriving: BTreeMap<Slot, u64>,
}

impl SlotState {
    /// Returns true if keys of `slot` may be stored here: owned, or moving in or out.
    pub fn holds(&self, slot: Slot) -> bool {
        self.owned.contains(slot)
            || self.handoff.contains_key(&slot)
            || self.arriving.contains_key(&slot)
    }
}

/// Slots per hash table: a chunk of 16 adjacent slots shares one table.
///
/// One table per slot would cost a cache miss on the table header of every lookup (16384
/// headers, 512 KiB); 1024 chunk tables keep their headers in cache. SCAN walks chunk by chunk
/// and per-slot key counts are kept separately.
pub const SLOTS_PER_CHUNK: usize = 16;

/// Number of chunks of slots.
pub const CHUNK_COUNT: usize = crate::slot::SLOT_COUNT / SLOTS_PER_CHUNK;

/// Source of `Keyspace::id`.
static NEXT_KEYSPACE_ID: AtomicU64 = AtomicU64::new(0);

/// The keys of one slot group, and the slots it owns.
///
/// Keys live in one hash table per chunk of 16 slots, so SCAN can walk chunk by chunk
/// (returning whole chunks keeps SCAN's guarantee without a resizable-table cursor), a chunk's
/// keys can be enumerated without touching the others, and slot key counts are O(1). Entries are
/// boxed: a table bucket is then one pointer, which keeps the half-empty buckets of a growing
/// table cheap. Every keyspace has a table per chunk (an empty table allocates nothing), so
/// any slot's keys can live in it: a group's slots are not fixed for its lifetime.
///
/// Which slots the group owns is kept here too, under the same lock, so a command checks
/// ownership and runs in one step. Keys of a slot it does not own may be present (a slot
/// being handed to another group keeps its keys until the hand-over completes).
///
/// Reads (`get`) treat an expired key as absent but never remove it, so a read never changes
/// state; write paths (`get_mut`, `remove`, ...) remove it, deterministically, given the
/// caller's clock.
pub struct Keyspace {
    /// The slots this group owns, and those on their way in or out.
    slots: SlotState,
    /// `tables[chunk]` holds the keys of slots `chunk * SLOTS_PER_CHUNK..`.
    tables: Vec<HashTable<Box<Entry>>>,
    /// Keys per slot (expired ones not yet removed included), for COUNTKEYSINSLOT.
    slot_counts: Vec<u32>,
    len: usize,
    /// (deadline, key) of every key with a deadline, earliest first.
    volatile: BTreeSet<(u64, Blob)>,
    /// Per bucket of keys: the log index of the latest entry that changed one of them.
    changes: Box<[u64]>,
    /// Changes at or before this index are not in `changes` (the keyspace was loaded from a
    /// snapshot taken there), so a WATCH from before it must fail.
    change_horizon: u64,
    /// The log index of the entry being applied: what `touch` records.
    applying: u64,
    /// The log index of the last entry applied completely.
    applied: u64,
    hasher: Hasher,
    /// Counters for INFO.
    pub stats: KeyspaceStats,
    /// The estimate of the memory the keys use (see `byte_meter`).
    bytes: ByteMeter,
    /// This keyspace among all those the process created, and how many times its entries
    /// changed: together they tell a dump taken a few chunks at a time whether the keys
    /// changed between two chunks.
    id: u64,
    version: u64,
}

impl Keyspace {
    /// Creates an empty keyspace owning `slots`.
    pub fn new(slots: Range<usize>) -> Keyspace {
        let mut owned = SlotSet::default();
        for slot in slots {
            owned.insert(slot as Slot);
        }
        Keyspace {
            slots: SlotState {
                owned,
                ..SlotState::default()
            },
            tables: (0..CHUNK_COUNT).map(|_| HashTable::new()).collect(),
            slot_counts: vec![0; crate::slot::SLOT_COUNT],
            len: 0,
            volatile: BTreeSet::new(),
            changes: vec![0; CHANGE_BUCKETS].into_boxed_slice(),
            change_horizon: 0,
            applying: 0,
            applied: 0,
            hasher: Hasher::default(),
            stats: KeyspaceStats::default(),
            bytes: ByteMeter::default(),
            id: NEXT_KEYSPACE_ID.fetch_add(1, Ordering::Relaxed),
            version: 0,
        }
    }

    /// Changes whenever an entry changes, or the keyspace is replaced by another.
    pub fn version(&self) -> (u64, u64) {
        (self.id, self.version)
    }

    /// The slots this keyspace owns, and those moving in or out.
    pub fn slot_state(&self) -> &SlotState {
        &self.slots
    }

    /// The slot state, for changing (its keys stay as they are).
    pub fn slot_state_mut(&mut self) -> &mut SlotState {
        &mut self.slots
    }

    /// Returns true if `slot` belongs to this keyspace.
    pub fn owns(&self, slot: Slot) -> bool {
        self.slots.owned.contains(slot)
    }

    /// Every stored entry of `slot`, expired ones included.
    pub fn slot_entries(&self, slot: Slot) -> impl Iterator<Item = &Entry> {
        self.tables[slot as usize / SLOTS_PER_CHUNK]
            .iter()
            .map(|e| &**e)
            .filter(move |e| slot_of(&e.key) == slot)
    }

    /// Removes every key of `slot` (recording each change for WATCH); returns how many.
    pub fn remove_slot(&mut self, slot: Slot) -> usize {
        let keys: Vec<Blob> = self.slot_entries(slot).map(|e| e.key.clone()).collect();
        for key in &keys {
            self.remove(key);
            self.touch(key);
        }
        keys.len()
    }

    /// Number of keys, expired-but-not-yet-removed ones included (as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns true if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of keys with a deadline.
    pub fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    fn locate(&self, key: &[u8]) -> (usize, u64) {
        let slot = slot_of(key) as usize;
        (slot / SLOTS_PER_CHUNK, self.hasher.hash_one(key))
    }

    /// Starts loading `key`'s entry into the CPU cache, for a lookup soon after: the probe
    /// touches only the table, and the entry it points to is fetched in the background.
    pub fn prefetch(&self, key: &[u8]) {
        let (table, hash) = self.locate(key);
        self.tables[table].find(hash, |e| {
            prefetch_read(&**e as *const Entry);
            false
        });
    }

    fn count_slot(&mut self, key: &[u8], delta: i32) {
        let index = slot_of(key) as usize;
        self.slot_counts[index] = self.slot_counts[index].wrapping_add_signed(delta);
    }

    fn raw_get(&self, key: &[u8]) -> Option<&Entry> {
        let (table, hash) = self.locate(key);
        self.tables[table]
            .find(hash, |e| e.key.as_ref() as &[u8] == key)
            .map(|e| &**e)
    }

    /// The live entry of `key` at `now_ms`; an expired key reads as absent.
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.raw_get(key).filter(|e| !e.is_expired(now_ms))
    }

    /// Returns true if `key` exists, expired or not (WATCH remembers which).
    pub fn contains_raw(&self, key: &[u8]) -> bool {
        self.raw_get(key).is_some()
    }

    /// Returns true if `key` exists but its deadline has passed.
    pub fn is_expired(&self, key: &[u8], now_ms: u64) -> bool {
        self.raw_get(key).is_some_and(|e| e.is_expired(now_ms))
    }

    /// The value of `key` for writing; an expired key is removed first and reads as absent.
    pub fn get_mut(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Value> {
        self.version += 1;
        if self.raw_get(key)?.is_expired(now_ms) {
            self.remove(key);
            return None;
        }
        let (table, hash) = self.locate(key);
        self.tables[table]
            .find_mut(hash, |e| e.key.as_ref() as &[u8] == key)
            .map(|e| &mut e.value)
    }

    /// Stores `value` under `key` with a deadline (0: none), replacing any previous value.
    pub fn insert(&mut self, key: &[u8], value: Value, expire_at: u64) {
        self.version += 1;
        let (table, hash) = self.locate(key);
        let hasher = &self.hasher;
        match self.tables[table].find_mut(hash, |e| e.key.as_ref() as &[u8] == key) {
            Some(entry) => {
                entry.value = value;
                let old = std::mem::replace(&mut entry.expire_at, expire_at);
                reindex_deadline(&mut self.volatile, key, old, expire_at);
            }
            None => {
                let entry = Box::new(Entry {
                    key: Blob::new(key),
                    value,
                    expire_at,
                });
                self.tables[table].insert_unique(hash, entry, |e| hasher.hash_one(&*e.key));
                self.len += 1;
                self.count_slot(key, 1);
                if expire_at != 0 {
                    self.volatile.insert((expire_at, Blob::new(key)));
                }
            }
        }
    }

    /// Removes `key` (expired or not) and returns its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.version += 1;
        let (table, hash) = self.locate(key);
        let found = self.tables[table]
            .find_entry(hash, |e| e.key.as_ref() as &[u8] == key)
            .ok()?;
        let (entry, _) = found.remove();
        self.len -= 1;
        self.count_slot(key, -1);
        if entry.expire_at != 0 {
            self.volatile.remove(&(entry.expire_at, entry.key.clone()));
        }
        let hasher = &self.hasher;
        let t = &mut self.tables[table];
        if t.capacity() > 64 && t.len() * 8 < t.capacity() {
            t.shrink_to(t.len() * 2, |e| hasher.hash_one(&*e.key));
        }
        Some(*entry)
    }

    /// Sets or clears (0) the deadline of an existing key; returns false if it does not exist.
    pub fn set_expire(&mut self, key: &[u8], expire_at: u64) -> bool {
        self.version += 1;
        let (table, hash) = self.locate(key);
        let Some(entry) = self.tables[table].find_mut(hash, |e| e.key.as_ref() as &[u8] == key)
        else {
            return false;
        };
        let old = std::mem::replace(&mut entry.expire_at, expire_at);
        reindex_deadline(&mut self.volatile, key, old, expire_at);
        true
    }

    /// Keys whose deadline is at or before `now_ms`, earliest first, at most `limit`.
    pub fn expired_keys(&self, now_ms: u64, limit: usize) -> Vec<Blob> {
        // Keys of slots moving out stay frozen until dropped; those moving in expire once
        // owned.
        self.volatile
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .filter(|(_, key)| self.owns(slot_of(key)))
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// The live entries of one chunk of slots (none past the last chunk).
    pub fn chunk_entries(&self, chunk: usize, now_ms: u64) -> impl Iterator<Item = &Entry> {
        self.tables
            .get(chunk)
            .into_iter()
            .flat_map(|t| t.iter())
            .map(|e| &**e)
            .filter(move |e| self.is_live(e, now_ms))
    }

    /// Measures up to `budget` more entries and returns the estimate of the memory the keys
    /// use (see `byte_meter`).
    pub fn measure_bytes(&mut self, budget: usize) -> u64 {
        let mut meter = std::mem::take(&mut self.bytes);
        let estimate = meter.step(self, budget);
        self.bytes = meter;
        estimate
    }

    /// The latest estimate of the memory the keys use, without measuring.
    pub fn bytes_estimate(&self) -> u64 {
        self.bytes.estimate(self.len)
    }

    /// Every stored entry of one chunk of slots, expired ones included.
    pub fn chunk_raw_entries(&self, chunk: usize) -> impl Iterator<Item = &Entry> {
        self.tables
            .get(chunk)
            .into_iter()
            .flat_map(|t| t.iter())
            .map(|e| &**e)
    }

    /// Number of keys of the slots this keyspace owns (as DBSIZE counts them): the frozen keys
    /// of slots moving out, and those of slots still arriving, are the other group's to count.
    pub fn owned_len(&self) -> usize {
        let moving: usize = self
            .slots
            .handoff
            .keys()
            .chain(self.slots.arriving.keys())
            .map(|&slot| self.slot_counts[slot as usize] as usize)
            .sum();
        self.len - moving
    }

    /// Number of keys stored in one slot.
    pub fn slot_len(&self, slot: usize) -> usize {
        self.slot_counts[slot] as usize
    }

    /// Every stored entry, expired ones not yet removed included (for snapshots).
    pub fn raw_entries(&self) -> impl Iterator<Item = &Entry> {
        self.tables.iter().flat_map(|t| t.iter()).map(|e| &**e)
    }

    /// Every live entry.
    pub fn entries(&self, now_ms: u64) -> impl Iterator<Item = &Entry> {
        self.tables
            .iter()
            .flat_map(|t| t.iter())
            .map(|e| &**e)
            .filter(move |e| self.is_live(e, now_ms))
    }

    /// Whether clients see `entry`: not expired, and of a slot this keyspace owns (keys of
    /// slots moving in or out are not this group's to show).
    fn is_live(&self, entry: &Entry, now_ms: u64) -> bool {
        !entry.is_expired(now_ms) && self.owns(slot_of(&entry.key))
    }

    /// A random live entry, or None if there is none (or only expired ones were found).
    pub fn random_entry(&self, rng: &mut impl Rng, now_ms: u64) -> Option<&Entry> {
        if self.len == 0 {
            return None;
        }
        // Pick a key uniformly by its position among all keys, then walk to it.
        for _ in 0..16 {
            let mut nth = rng.random_range(0..self.len);
            for table in &self.tables {
                if nth < table.len() {
                    let entry = table.iter().nth(nth).map(|e| &**e)?;
                    if self.is_live(entry, now_ms) {
                        return Some(entry);
                    }
                    break;
                }
                nth -= table.len();
            }
        }
        self.entries(now_ms).next()
    }

    /// Removes every key, recording the change of each for WATCH.
    pub fn clear(&mut self) {
        self.version += 1;
        if self.len > 0 {
            // Every bucket holding a key changed; stamping them all is cheaper than finding them.
            let applying = self.applying;
            self.changes.iter_mut().for_each(|c| *c = applying);
        }
        for table in &mut self.tables {
            *table = HashTable::new();
        }
        self.slot_counts.iter_mut().for_each(|c| *c = 0);
        self.volatile.clear();
        self.len = 0;
    }

    /// Marks `key` as changed by the entry being applied: a WATCH of it from before that entry
    /// fails.
    pub fn touch(&mut self, key: &[u8]) {
        let bucket = self.change_bucket(key);
        self.changes[bucket] = self.applying;
    }

    /// Returns true if `key` may have changed after log index `index`.
    pub fn changed_since(&self, key: &[u8], index: u64) -> bool {
        index < self.change_horizon || self.changes[self.change_bucket(key)] > index
    }

    /// Starts applying log entry `index`: the changes it makes are recorded under it.
    pub fn begin_apply(&mut self, index: u64) {
        self.applying = index;
    }

    /// Records that log entry `index` was applied completely.
    pub fn end_apply(&mut self, index: u64) {
        self.applied = index;
    }

    /// The log index of the last entry applied completely (where a WATCH starts).
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Forgets recorded changes: the keyspace was just loaded from a snapshot of log index
    /// `index`, and what changed before it is unknown.
    pub fn reset_changes(&mut self, index: u64) {
        self.changes.iter_mut().for_each(|c| *c = 0);
        self.change_horizon = index;
        self.applying = index;
        self.applied = index;
    }

    fn change_bucket(&self, key: &[u8]) -> usize {
        self.hasher.hash_one(key) as usize & (CHANGE_BUCKETS - 1)
    }
}

/// Moves `key` in the expiry index from deadline `old` to `new` (0: none).
fn reindex_deadline(volatile: &mut BTreeSet<(u64, Blob)>, key: &[u8], old: u64, new: u64) {
    if old == new {
        return;
    }
    if old != 0 {
        volatile.remove(&(old, Blob::new(key)));
    }
    if new != 0 {
        volatile.insert((new, Blob::new(key)));
    }
}

/// Asks the CPU to start loading the cache line at `at`; a no-op where that cannot be asked.
#[inline]
fn prefetch_read<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::SLOT_COUNT;

    fn string(v: &str) -> Value {
        Value::string(v.as_bytes())
    }

    #[test]
    fn prefetching_present_and_absent_keys_changes_nothing() {
        let mut ks = Keyspace::new(0..SLOT_COUNT);
        for i in 0..1000 {
            ks.insert(format!("k{i}").as_bytes(), string("v"), 0);
        }
        for i in 0..2000 {
            ks.prefetch(format!("k{i}").as_bytes());
        }
        assert_eq!(ks.len(), 1000);
        assert!(ks.get(b"k999", 0).is_some());
        assert!(ks.get(b"k1000", 0).is_none());
    }

    #[test]
    fn reads_never_remove_expired_keys() {
        let mut ks = Keyspace::new(0..SLOT_COUNT);
        ks.insert(b"a", string("1"), 100);
        assert!(ks.get(b"a", 99).is_some());
        assert!(ks.get(b"a", 100).is_none());
        assert_eq!(ks.len(), 1);
        assert!(ks.get_mut(b"a", 100).is_none());
        assert_eq!(ks.len(), 0);
        assert_eq!(ks.volatile_len(), 0);
    }

    #[test]
    fn expiry_index_follows_changes() {
        let mut ks = Keyspace::new(0..SLOT_COUNT);
        ks.insert(b"a", string("1"), 50);
        ks.insert(b"b", string("1"), 10);
        ks.insert(b"a", string("2"), 0);
        assert_eq!(ks.expired_keys(100, 10), vec![Blob::new(b"b")]);
        ks.set_expire(b"a", 5);
        assert_eq!(
            ks.expired_keys(100, 10),
            vec![Blob::new(b"a"), Blob::new(b"b")]
        );
        ks.remove(b"a");
        assert_eq!(ks.volatile_len(), 1);
    }

    #[test]
    fn slot_counts_and_chunks_follow_inserts_and_removals() {
        let keys = ["{user1000}.a", "{user1000}.b", "{user1000}.c"];
        let slot = slot_of(keys[0].as_bytes()) as usize;
        // Owning a range that does not start at chunk 0, around the keys' slot.
        let start = slot - slot % 100;
        let mut ks = Keyspace::new(start..start + 100);
        for key in keys {
            ks.insert(key.as_bytes(), string("v"), 0);
        }
        ks.insert(keys[0].as_bytes(), string("again"), 0);
        assert_eq!(ks.slot_len(slot), 3);
        ks.remove(keys[1].as_bytes());
        assert_eq!(ks.slot_len(slot), 2);
        let chunk = slot / SLOTS_PER_CHUNK;
        assert_eq!(ks.chunk_entries(chunk, 0).count(), 2);
        assert_eq!(ks.chunk_entries(chunk + 1, 0).count(), 0);
        assert_eq!(
            ks.chunk_entries(CHUNK_COUNT + 5, 0).count(),
            0,
            "no such chunk"
        );
        ks.clear();
        assert_eq!(ks.slot_len(slot), 0);
    }

    #[test]
    fn changes_are_recorded_by_log_index() {
        let mut ks = Keyspace::new(0..SLOT_COUNT);
        ks.begin_apply(7);
        ks.insert(b"a", string("1"), 0);
        ks.touch(b"a");
        ks.end_apply(7);
        assert_eq!(ks.applied_index(), 7);
        assert!(ks.changed_since(b"a", 6));
        assert!(
            !ks.changed_since(b"a", 7),
            "a watch taken after entry 7 saw its change"
        );
        // The other buckets did not change (one key in 4096 would collide with "a").
        let untouched = (0..100)
            .map(|i| format!("k{i}"))
            .filter(|k| !ks.changed_since(k.as_bytes(), 6))
            .count();
        assert!(untouched >= 95, "{untouched}");
        ks.begin_apply(9);
        ks.clear();
        assert!(ks.changed_since(b"k1", 8));
        ks.reset_changes(20);
        assert!(
            ks.changed_since(b"zz", 19),
            "before the snapshot nothing is known"
        );
        assert!(!ks.changed_since(b"a", 20));
    }
}
