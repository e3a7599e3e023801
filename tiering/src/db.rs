//! The engine's front door: routes a command to the keyspaces it touches, locks them, runs it.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use resp::command_table::CommandSpec;
use resp::Frame;
use smallvec::SmallVec;

use crate::arrivals::Arrivals;
use crate::blob::Blob;
use crate::blocking::{Blocking, Waiter};
use crate::cmd::{self, LockScope};
use crate::exec::{BlockOn, Exec, ExecCtx, Locked};
use crate::keyspace::{Keyspace, KeyspaceStats, CHUNK_COUNT};
use crate::slot::{slot_of, Slot, SLOT_COUNT};
use crate::slot_set::SlotSet;
use crate::snapshot::{self, SnapshotError};

/// Keys a dump of a group takes per hold of the group's lock (at least a whole chunk of 16
/// slots): about a millisecond of a reader's wait.
const DUMP_STEP: usize = 8192;

/// Settings the engine reads while it runs; CONFIG SET changes them live.
#[derive(Debug)]
pub struct EngineConfig {
    /// `proto-max-bulk-len`: the largest string a command may build.
    pub max_bulk_len: AtomicUsize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_bulk_len: AtomicUsize::new(512 * 1024 * 1024),
        }
    }
}

/// What running a command produced.
#[derive(Debug)]
pub struct Executed {
    pub reply: Frame,
    /// Set when a blocking command found nothing: the caller waits and runs it again.
    pub block: Option<BlockOn>,
    /// Set when the group holding a key's slot here does not own it (the slot moved, or is
    /// moving, to another group): nothing ran, `reply` is meaningless.
    pub moved: Option<Slot>,
}

impl Executed {
    fn reply(reply: Frame) -> Executed {
        Executed {
            reply,
            block: None,
            moved: None,
        }
    }

    fn moved(slot: Slot) -> Executed {
        Executed {
            reply: Frame::Null,
            block: None,
            moved: Some(slot),
        }
    }
}

/// How a command is run on behalf of a client.
#[derive(Clone, Copy, Default)]
pub struct Caller<'a> {
    /// Inside MULTI/EXEC: blocking commands do not block.
    pub in_multi: bool,
    /// The client's waiter, queued on the keys if the command blocks.
    pub waiter: Option<&'a Arc<Waiter>>,
    /// Limits a command over the whole keyspace (KEYS, SCAN, DBSIZE) to these groups: a
    /// cluster node answers for the groups it leads.
    pub only_groups: Option<&'a [usize]>,
}

/// A WATCH: EXEC fails if the key changed after the watch began (or expired since).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub key: Blob,
    /// The key was already logically expired when watched (so its expiry is no change).
    pub expired: bool,
    /// The last log index its group had applied when the watch began.
    pub applied: u64,
}

/// The whole keyspace of a node: one [`Keyspace`] per slot group, each behind its own lock.
///
/// A command locks the keyspaces of its keys in group order (so two commands never wait on each
/// other in a cycle), runs, and signals blocked clients after. Commands over all keys (DBSIZE,
/// KEYS, SCAN, FLUSHALL) lock every keyspace.
pub struct Db {
    pub(crate) keyspaces: Box<[Mutex<Keyspace>]>,
    /// For each slot, the keyspace (group) that holds it on this node: the group this node
    /// takes to own the slot. Starts as contiguous ranges; changes as slots move.
    routes: Box<[AtomicU16]>,
    groups: usize,
    blocking: Blocking,
    /// Slots being imported here, for commands that wait for them (see [`Db::wait_arrival`]).
    pub(crate) arrivals: Arrivals,
    config: EngineConfig,
}

impl Db {
    /// Creates an empty engine with `groups` slot groups (1..=16384).
    pub fn new(groups: usize) -> Db {
        let groups = groups.clamp(1, SLOT_COUNT);
        let keyspaces = (0..groups)
            .map(|g| {
                Mutex::new(Keyspace::new(
                    Self::group_start(g, groups)..Self::group_start(g + 1, groups),
                ))
            })
            .collect();
        let routes = (0..SLOT_COUNT)
            .map(|slot| AtomicU16::new((slot * groups / SLOT_COUNT) as u16))
            .collect();
        Db {
            keyspaces,
            routes,
            groups,
            blocking: Blocking::default(),
            arrivals: Arrivals::default(),
            config: EngineConfig::default(),
        }
    }

    fn group_start(group: usize, groups: usize) -> usize {
        (group * SLOT_COUNT).div_ceil(groups)
    }

    /// Number of slot groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// The slot group owning `slot`, as far as this node knows (see [`Db::set_route`]).
    pub fn group_of_slot(&self, slot: Slot) -> usize {
        self.routes[slot as usize].load(Ordering::Relaxed) as usize
    }

    /// Records that `group` owns `slot` now: commands not run by a group's log (reads) look
    /// for its keys in that group's keyspace.
    pub fn set_route(&self, slot: Slot, group: usize) {
        if group < self.groups {
            self.routes[slot as usize].store(group as u16, Ordering::Relaxed);
        }
    }

    /// The slots each group owns as this node knows it: its routes, by group.
    pub fn routes(&self) -> Vec<SlotSet> {
        let mut by_group = vec![SlotSet::default(); self.groups];
        for slot in 0..SLOT_COUNT as Slot {
            by_group[self.group_of_slot(slot)].insert(slot);
        }
        by_group
    }

    /// The engine's live settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The engine's counters, summed over every keyspace.
    pub fn stats(&self) -> KeyspaceStats {
        let mut total = KeyspaceStats::default();
        for ks in self.keyspaces.iter() {
            total += ks.lock().stats;
        }
        total
    }

    /// The blocked-client queues.
    pub fn blocking(&self) -> &Blocking {
        &self.blocking
    }

    /// Returns true if the engine runs this command (the server runs the others).
    pub fn handles(spec: &CommandSpec) -> bool {
        cmd::lookup_spec(spec).is_some()
    }

    /// The groups whose keyspaces a command reads: those of its keys, or every group for a
    /// command over the whole keyspace or whose keys cannot be found.
    pub fn groups_of(&self, spec: &CommandSpec, args: &[Bytes]) -> SmallVec<[usize; 4]> {
        match cmd::lookup_spec(spec) {
            Some(def) => self.groups_for(def.locks, spec, args),
            None => SmallVec::new(),
        }
    }

    /// Runs one command. `spec` must be the command table's entry for `args`, arity checked.
    pub fn execute(
        &self,
        spec: &CommandSpec,
        args: &[Bytes],
        ctx: ExecCtx,
        caller: &Caller<'_>,
    ) -> Executed {
        let Some(def) = cmd::lookup_spec(spec) else {
            return Executed::reply(Frame::error(format!("ERR unknown command '{}'", spec.name)));
        };
        let groups = match (def.locks, caller.only_groups) {
            (LockScope::All, Some(only)) => only.iter().copied().collect(),
            _ => self.groups_for(def.locks, spec, args),
        };
        let locked = self.lock(&groups);
        if def.locks == LockScope::Keys {
            if let Some(slot) = unowned_slot(&locked, spec, args) {
                return Executed::moved(slot);
            }
        }
        let mut exec = Exec::new(locked, self, ctx, caller.in_multi);
        let reply = (def.handler)(&mut exec, args).unwrap_or_else(|e| e.to_frame());
        self.finish(exec, reply, caller)
    }

    /// Runs one command of a replicated group's log: like [`Db::execute`], but in `group`'s
    /// keyspace only (a group's log applies to its own keyspace, whatever this node's routes
    /// say), so a command over the whole keyspace (FLUSHALL) covers only `group`, as each
    /// group's log carries its own copy of it.
    pub fn execute_in_group(
        &self,
        group: usize,
        spec: &CommandSpec,
        args: &[Bytes],
        ctx: ExecCtx,
    ) -> Executed {
        let Some(def) = cmd::lookup_spec(spec) else {
            return Executed::reply(Frame::error(format!("ERR unknown command '{}'", spec.name)));
        };
        let locked = self.lock_confined(group);
        if def.locks == LockScope::Keys {
            if let Some(slot) = unowned_slot(&locked, spec, args) {
                return Executed::moved(slot);
            }
        }
        let mut exec = Exec::new(locked, self, ctx, false);
        let reply = (def.handler)(&mut exec, args).unwrap_or_else(|e| e.to_frame());
        self.finish(exec, reply, &Caller::default())
    }

    /// Runs a transaction of `group`'s log as one atomic step in its keyspace, unless a watched
    /// key changed (then returns Ok(None), and nothing ran), or a key's slot is not the
    /// group's (then returns that slot, and nothing ran).
    pub fn execute_multi(
        &self,
        group: usize,
        commands: &[(&CommandSpec, &[Bytes])],
        watches: &[Watch],
        ctx: ExecCtx,
    ) -> Result<Option<Vec<Frame>>, Slot> {
        let locked = self.lock_confined(group);
        for (spec, args) in commands {
            if let Some(slot) = unowned_slot(&locked, spec, args) {
                return Err(slot);
            }
        }
        if let Some(watch) = watches
            .iter()
            .find(|watch| !locked.guards[0].1.owns(slot_of(&watch.key)))
        {
            return Err(slot_of(&watch.key));
        }
        // Checked under the lock, so no write can land between the check and the commands.
        let ks = &locked.guards[0].1;
        let dirty = watches.iter().any(|watch| {
            ks.changed_since(&watch.key, watch.applied)
                || (!watch.expired && ks.is_expired(&watch.key, ctx.now_ms))
        });
        if dirty {
            return Ok(None);
        }
        let mut exec = Exec::new(locked, self, ctx, true);
        let mut replies = Vec::with_capacity(commands.len());
        for (spec, args) in commands {
            let reply = match cmd::lookup_spec(spec) {
                Some(def) => (def.handler)(&mut exec, args).unwrap_or_else(|e| e.to_frame()),
                None => Frame::error("ERR command not run by the engine"),
            };
            replies.push(reply);
        }
        let Executed { .. } = self.finish(exec, Frame::Null, &Caller::default());
        Ok(Some(replies))
    }

    /// Locks every keyspace (for server-side work such as active expiry and INFO).
    pub fn with_all<R>(&self, ctx: ExecCtx, f: impl FnOnce(&mut Exec) -> R) -> R {
        let groups: SmallVec<[usize; 4]> = (0..self.groups).collect();
        let mut exec = Exec::new(self.lock(&groups), self, ctx, false);
        let result = f(&mut exec);
        self.finish(exec, Frame::Null, &Caller::default());
        result
    }

    /// Starts a WATCH of `key`: where its group's log stands, and whether the key is already
    /// logically expired.
    pub fn watch(&self, key: &[u8], now_ms: u64) -> Watch {
        let ks = self.keyspaces[self.group_of_slot(slot_of(key))].lock();
        Watch {
            key: Blob::new(key),
            expired: ks.is_expired(key, now_ms),
            applied: ks.applied_index(),
        }
    }

    /// Starts loading the entries of `keys` (all of `group`) into the CPU cache, ahead of
    /// applying the writes that touch them.
    pub fn prefetch<'a>(&self, group: usize, keys: impl Iterator<Item = &'a [u8]>) {
        let ks = self.keyspaces[group].lock();
        for key in keys {
            ks.prefetch(key);
        }
    }

    /// Starts applying log entry `index` of `group`: the changes it makes are recorded under it
    /// (for WATCH).
    pub fn begin_apply(&self, group: usize, index: u64) {
        self.keyspaces[group].lock().begin_apply(index);
    }

    /// Records that log entry `index` of `group` was applied.
    pub fn end_apply(&self, group: usize, index: u64) {
        self.keyspaces[group].lock().end_apply(index);
    }

    /// Number of keys in each keyspace (expired ones not yet removed included), and of those
    /// with a deadline.
    pub fn key_counts(&self) -> (usize, usize) {
        self.keyspaces.iter().fold((0, 0), |(keys, volatile), ks| {
            let ks = ks.lock();
            (keys + ks.len(), volatile + ks.volatile_len())
        })
    }

    /// Number of keys in slot group `group` (expired ones not yet removed included).
    pub fn group_len(&self, group: usize) -> usize {
        self.keyspaces.get(group).map_or(0, |ks| ks.lock().len())
    }

    /// Measures a little more of `group`'s keyspace (up to `budget` entries) and returns the
    /// estimate of the memory its keys use (see `byte_meter`).
    pub fn measure_group_bytes(&self, group: usize, budget: usize) -> u64 {
        self.keyspaces
            .get(group)
            .map_or(0, |ks| ks.lock().measure_bytes(budget))
    }

    /// The latest estimate of the memory `group`'s keys use, without measuring.
    pub fn group_bytes(&self, group: usize) -> u64 {
        self.keyspaces
            .get(group)
            .map_or(0, |ks| ks.lock().bytes_estimate())
    }

    /// Number of keys stored in `slot` (expired ones not yet removed included, as Redis counts
    /// them for CLUSTER COUNTKEYSINSLOT).
    pub fn count_keys_in_slot(&self, slot: Slot) -> usize {
        self.keyspaces[self.group_of_slot(slot)]
            .lock()
            .slot_len(slot as usize)
    }

    /// Up to `count` keys stored in `slot` (CLUSTER GETKEYSINSLOT).
    pub fn keys_in_slot(&self, slot: Slot, count: usize) -> Vec<Blob> {
        let ks = self.keyspaces[self.group_of_slot(slot)].lock();
        let chunk = slot as usize / crate::keyspace::SLOTS_PER_CHUNK;
        ks.chunk_entries(chunk, 0)
            .filter(|e| slot_of(&e.key) == slot)
            .take(count)
            .map(|e| e.key.clone())
            .collect()
    }

    /// Appends a dump of one slot group's keys (a raft snapshot of the group) to `out`.
    ///
    /// The dump holds the group's lock for about `DUMP_STEP` keys at a time, so that readers of
    /// the group wait for one step at most, not for the whole dump (seconds, for millions of
    /// keys). The caller keeps the group's writes out until it returns, as a raft state machine
    /// does by applying nothing meanwhile; should the keys change between two steps anyway,
    /// the dump is taken again under one hold of the lock.
    pub fn dump_group(&self, group: usize, out: &mut Vec<u8>) {
        let start = out.len();
        if !self.dump_group_in_steps(group, out, &mut || {}) {
            tracing::warn!(
                group,
                "keys changed during a dump; dumping again under one lock"
            );
            out.truncate(start);
            snapshot::dump(&self.keyspaces[group].lock(), out);
        }
    }

    /// Dumps `group` a step of chunks at a time, calling `between_steps` (tests) with the lock
    /// released; returns false if the keys changed meanwhile.
    fn dump_group_in_steps(
        &self,
        group: usize,
        out: &mut Vec<u8>,
        between_steps: &mut dyn FnMut(),
    ) -> bool {
        let keyspace = &self.keyspaces[group];
        let (count, version) = {
            let ks = keyspace.lock();
            (ks.len(), ks.version())
        };
        snapshot::dump_header(count, out);
        let mut dumped = 0;
        let mut chunk = 0;
        while chunk < CHUNK_COUNT {
            let ks = keyspace.lock();
            if ks.version() != version {
                return false;
            }
            let step_end = dumped + DUMP_STEP;
            while chunk < CHUNK_COUNT && dumped < step_end {
                for entry in ks.chunk_raw_entries(chunk) {
                    snapshot::dump_entry(entry, out);
                    dumped += 1;
                }
                chunk += 1;
            }
            drop(ks);
            between_steps();
        }
        dumped == count
    }

    /// Replaces one slot group's keys with a dump taken at log index `index`.
    pub fn load_group(&self, group: usize, bytes: &[u8], index: u64) -> Result<(), SnapshotError> {
        let mut ks = self.keyspaces[group].lock();
        let slots = ks.slot_state().clone();
        snapshot::load(&mut ks, bytes, |slot| slots.holds(slot))?;
        ks.reset_changes(index);
        Ok(())
    }

    /// Empties one slot group's keyspace and resets it to the group's first slots: this node
    /// no longer replicates the group. A replica opened here later starts as a new one would
    /// (its log, replayed from the start, moves its slots again: with the slot state left
    /// behind, the replay would refuse to import slots it already "owned", and lose them).
    pub fn clear_group(&self, group: usize) {
        let slots =
            Self::group_start(group, self.groups)..Self::group_start(group + 1, self.groups);
        *self.keyspaces[group].lock() = Keyspace::new(slots);
    }

    /// Up to `limit` keys of `group` whose deadline passed at `now_ms` (left in place: a
    /// replicated leader proposes their deletion).
    pub fn expired_keys(&self, group: usize, now_ms: u64, limit: usize) -> Vec<Blob> {
        self.keyspaces[group].lock().expired_keys(now_ms, limit)
    }

    /// Removes each of `keys` of `group` that is expired at `now_ms`; returns how many were
    /// removed. This is how a replicated group applies the deletions its leader proposes.
    pub fn remove_expired(&self, group: usize, keys: &[Vec<u8>], now_ms: u64) -> usize {
        let mut removed = 0;
        let mut ks = self.keyspaces[group].lock();
        for key in keys {
            // A slot handed over stays frozen until its keys are dropped.
            if ks.owns(slot_of(key)) && ks.is_expired(key, now_ms) {
                ks.remove(key);
                ks.touch(key);
                ks.stats.expired += 1;
                removed += 1;
            }
        }
        removed
    }

    fn groups_for(
        &self,
        scope: LockScope,
        spec: &CommandSpec,
        args: &[Bytes],
    ) -> SmallVec<[usize; 4]> {
        let mut groups: SmallVec<[usize; 4]> = match scope {
            LockScope::All => (0..self.groups).collect(),
            LockScope::Keys if spec.single_key_index(args.len()).is_some() => {
                let index = spec
                    .single_key_index(args.len())
                    .expect("checked by the guard");
                return smallvec::smallvec![self.group_of_slot(slot_of(&args[index]))];
            }
            LockScope::Keys => match spec.key_positions(args) {
                Ok(keys) => keys
                    .iter()
                    .map(|k| self.group_of_slot(slot_of(&args[k.index])))
                    .collect(),
                // The command will reject its arguments; lock everything so that even a
                // command that reads keys before noticing cannot touch an unlocked keyspace.
                Err(_) => (0..self.groups).collect(),
            },
        };
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    fn lock(&self, groups: &[usize]) -> Locked<'_> {
        Locked {
            guards: groups
                .iter()
                .map(|&g| (g, self.keyspaces[g].lock()))
                .collect(),
            confined: false,
        }
    }

    /// Locks `group`'s keyspace for a command of its log: every key it names goes there.
    fn lock_confined(&self, group: usize) -> Locked<'_> {
        Locked {
            guards: smallvec::smallvec![(group, self.keyspaces[group].lock())],
            confined: true,
        }
    }

    fn finish(&self, exec: Exec<'_>, reply: Frame, caller: &Caller<'_>) -> Executed {
        let Exec {
            mut locked,
            signalled,
            block,
            dirty,
            hits,
            misses,
            ..
        } = exec;
        if let Some((_, first)) = locked.guards.first_mut() {
            first.stats += KeyspaceStats {
                hits,
                misses,
                dirty,
                expired: 0,
            };
        }
        // Queue or dequeue the waiter while the keyspaces are still locked, so that no write
        // can slip between the failed attempt and the registration.
        if let (Some(waiter), Some(on)) = (&caller.waiter, &block) {
            self.blocking.register(waiter, &on.keys);
        }
        drop(locked);
        for key in &signalled {
            self.blocking.signal(key);
        }
        Executed {
            reply,
            block,
            moved: None,
        }
    }
}

/// The slot of one of the command's keys that no locked keyspace owns, if any.
fn unowned_slot(locked: &Locked<'_>, spec: &CommandSpec, args: &[Bytes]) -> Option<Slot> {
    let owned = |slot: Slot| locked.guards.iter().any(|(_, ks)| ks.owns(slot));
    if let Some(index) = spec.single_key_index(args.len()) {
        let slot = slot_of(&args[index]);
        return (!owned(slot)).then_some(slot);
    }
    // Unparsable keys: the command rejects its arguments before touching any key.
    let keys = spec.key_positions(args).ok()?;
    keys.iter()
        .map(|key| slot_of(&args[key.index]))
        .find(|&slot| !owned(slot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    /// A one-group Db holding `n` keys, several dump steps' worth for large `n`.
    fn db_with_keys(n: usize) -> Db {
        let db = Db::new(1);
        let mut ks = db.keyspaces[0].lock();
        for i in 0..n {
            let key = format!("key:{i}");
            let expire_at = if i % 7 == 0 { 4_000_000_000_000 } else { 0 };
            ks.insert(
                key.as_bytes(),
                Value::string(format!("value {i}").as_bytes()),
                expire_at,
            );
        }
        drop(ks);
        db
    }

    fn dump_under_one_lock(db: &Db) -> Vec<u8> {
        let mut out = Vec::new();
        snapshot::dump(&db.keyspaces[0].lock(), &mut out);
        out
    }

    #[test]
    fn a_dump_in_steps_is_the_dump_under_one_lock() {
        let db = db_with_keys(5 * DUMP_STEP + 123);
        let mut steps = 0;
        let mut out = b"prefix".to_vec();
        assert!(db.dump_group_in_steps(0, &mut out, &mut || steps += 1));
        assert!(steps >= 5, "took {steps} steps");
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out[6..], dump_under_one_lock(&db)[..]);

        let mut restored = Keyspace::new(0..SLOT_COUNT);
        snapshot::load(&mut restored, &out[6..], |_| true).unwrap();
        assert_eq!(restored.len(), 5 * DUMP_STEP + 123);
    }

    #[test]
    fn a_change_between_steps_makes_the_dump_start_again_under_one_lock() {
        let db = db_with_keys(3 * DUMP_STEP);
        let mut changed = false;
        let mut out = Vec::new();
        let consistent = db.dump_group_in_steps(0, &mut out, &mut || {
            if !changed {
                changed = true;
                db.keyspaces[0]
                    .lock()
                    .insert(b"late", Value::string(b"write"), 0);
            }
        });
        assert!(!consistent, "a dump spanning a change must not be used");

        // dump_group falls back to one hold of the lock: the result has the late key.
        let mut out = Vec::new();
        db.dump_group(0, &mut out);
        assert_eq!(out, dump_under_one_lock(&db));
        let mut restored = Keyspace::new(0..SLOT_COUNT);
        snapshot::load(&mut restored, &out, |_| true).unwrap();
        assert_eq!(restored.len(), 3 * DUMP_STEP + 1);
        assert!(restored.contains_raw(b"late"));
    }

    #[test]
    fn an_empty_group_dumps_as_an_empty_keyspace() {
        let db = Db::new(4);
        let mut out = Vec::new();
        db.dump_group(2, &mut out);
        assert_eq!(out, {
            let mut empty = Vec::new();
            snapshot::dump(&db.keyspaces[2].lock(), &mut empty);
            empty
        });
    }
}
