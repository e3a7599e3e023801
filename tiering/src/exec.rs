//! The environment a command executes in: the keyspaces it has locked, the caller's clock and
//! randomness, and what it changed.

use std::sync::atomic::Ordering;

use parking_lot::MutexGuard;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use smallvec::SmallVec;

use crate::blob::Blob;
use crate::db::Db;
use crate::error::CommandError;
use crate::keyspace::{Entry, Keyspace};
use crate::slot::slot_of;
use crate::value::{HashValue, ListValue, SetValue, StrKind, Value};
use crate::zset::SortedSet;

/// The clock and randomness a command executes with.
///
/// Both come from the caller, never from the engine: on one node the caller reads its clock and
/// draws a seed; a replicated caller puts them in the log entry, so every replica computes the
/// same deadlines (EXPIRE 10 becomes the same absolute time everywhere) and makes the same
/// random choices (SPOP picks the same members, since collections keep a deterministic order).
#[derive(Clone, Copy, Debug)]
pub struct ExecCtx {
    /// Unix time in milliseconds.
    pub now_ms: u64,
    /// Seed of the command's random choices.
    pub seed: u64,
}

/// Where a blocking command waits: its keys and its deadline (None: forever).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOn {
    pub keys: Vec<Blob>,
    pub deadline_ms: Option<u64>,
}

/// The keyspaces a command holds locked, in group order.
pub(crate) struct Locked<'a> {
    pub(crate) guards: SmallVec<[(usize, MutexGuard<'a, Keyspace>); 2]>,
    /// Every key goes to the one locked keyspace, whatever this node's routes say: a group's
    /// log applies to its own keyspace only (routes change as slots move between groups,
    /// while a replica may still be applying entries from before the move).
    pub(crate) confined: bool,
}

/// A command's access to the data.
pub struct Exec<'a> {
    pub(crate) locked: Locked<'a>,
    pub(crate) db: &'a Db,
    /// The caller's clock and seed.
    pub ctx: ExecCtx,
    /// Set by a blocking command that found nothing to pop.
    pub(crate) block: Option<BlockOn>,
    /// Blocking commands return at once inside MULTI.
    pub(crate) in_multi: bool,
    /// Keys changed, kept only while clients are blocked (to wake them).
    pub(crate) signalled: SmallVec<[Blob; 2]>,
    pub(crate) dirty: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    rng: Option<SmallRng>,
}

impl<'a> Exec<'a> {
    pub(crate) fn new(locked: Locked<'a>, db: &'a Db, ctx: ExecCtx, in_multi: bool) -> Self {
        Exec {
            locked,
            db,
            ctx,
            block: None,
            in_multi,
            signalled: SmallVec::new(),
            dirty: 0,
            hits: 0,
            misses: 0,
            rng: None,
        }
    }

    /// The engine this command runs in.
    pub fn db(&self) -> &Db {
        self.db
    }

    /// Unix time in milliseconds, as given by the caller.
    pub fn now(&self) -> u64 {
        self.ctx.now_ms
    }

    /// Runs `f` with the command's random source taken out of `self`, so it can draw while
    /// holding a mutable borrow of the data.
    pub fn with_rng<T>(&mut self, f: impl FnOnce(&mut Self, &mut SmallRng) -> T) -> T {
        let mut rng = self
            .rng
            .take()
            .unwrap_or_else(|| SmallRng::seed_from_u64(self.ctx.seed));
        let result = f(self, &mut rng);
        self.rng = Some(rng);
        result
    }

    /// The command's deterministic random source.
    pub fn rng(&mut self) -> &mut SmallRng {
        let seed = self.ctx.seed;
        self.rng
            .get_or_insert_with(|| SmallRng::seed_from_u64(seed))
    }

    fn index_of(&self, key: &[u8]) -> usize {
        if self.locked.confined {
            return 0;
        }
        if self.locked.guards.len() == 1 {
            // The common single-keyspace case: skip hashing the key to its slot again.
            return 0;
        }
        // The keyspace that owns the key's slot (checked before the command ran, and owners
        // do not change under the locks); routes may have changed since they were read.
        let slot = slot_of(key);
        let guards = &self.locked.guards;
        guards
            .iter()
            .position(|(_, ks)| ks.owns(slot))
            .or_else(|| {
                let group = self.db.group_of_slot(slot);
                guards.iter().position(|(g, _)| *g == group)
            })
            .unwrap_or(0)
    }

    /// The keyspace holding `key`.
    pub fn keyspace(&self, key: &[u8]) -> &Keyspace {
        &self.locked.guards[self.index_of(key)].1
    }

    /// The keyspace holding `key`, for writing.
    pub fn keyspace_mut(&mut self, key: &[u8]) -> &mut Keyspace {
        let i = self.index_of(key);
        &mut self.locked.guards[i].1
    }

    /// Every locked keyspace, in slot order.
    pub fn keyspaces(&self) -> impl Iterator<Item = &Keyspace> {
        self.locked.guards.iter().map(|(_, g)| &**g)
    }

    /// Every locked keyspace, for writing.
    pub fn keyspaces_mut(&mut self) -> impl Iterator<Item = &mut Keyspace> + use<'_, 'a> {
        self.locked.guards.iter_mut().map(|(_, g)| &mut **g)
    }

    /// The live entry of `key`, counting a keyspace hit or miss (a read).
    pub fn lookup(&mut self, key: &[u8]) -> Option<&Entry> {
        let now = self.ctx.now_ms;
        let i = self.index_of(key);
        let found = self.locked.guards[i].1.get(key, now);
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    /// The live entry of `key`, without counting it as a read.
    pub fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.keyspace(key).get(key, self.ctx.now_ms)
    }

    /// The live value of `key`.
    pub fn value(&self, key: &[u8]) -> Option<&Value> {
        self.entry(key).map(|e| &e.value)
    }

    /// The value of `key` for writing (an expired key is removed first).
    pub fn value_mut(&mut self, key: &[u8]) -> Option<&mut Value> {
        let now = self.ctx.now_ms;
        self.keyspace_mut(key).get_mut(key, now)
    }

    /// Stores a value, replacing any previous value and deadline (0: none).
    pub fn insert(&mut self, key: &[u8], value: Value, expire_at: u64) {
        self.keyspace_mut(key).insert(key, value, expire_at);
        self.modified(key);
    }

    /// Stores a value and keeps the key's current deadline, as a write that is not a SET does.
    pub fn insert_keep_ttl(&mut self, key: &[u8], value: Value) {
        let expire_at = self.expire_at(key).unwrap_or(0);
        self.insert(key, value, expire_at);
    }

    /// Removes `key`; returns its entry if it was live.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let now = self.ctx.now_ms;
        let ks = self.keyspace_mut(key);
        let expired = ks.is_expired(key, now);
        let entry = ks.remove(key)?;
        if expired {
            return None;
        }
        self.modified(key);
        Some(entry)
    }

    /// The deadline of a live key.
    pub fn expire_at(&self, key: &[u8]) -> Option<u64> {
        self.entry(key).and_then(|e| e.expire_at())
    }

    /// Sets (or with 0 clears) the deadline of a live key.
    pub fn set_expire(&mut self, key: &[u8], expire_at: u64) -> bool {
        let now = self.ctx.now_ms;
        if self.keyspace_mut(key).get_mut(key, now).is_none() {
            return false;
        }
        self.keyspace_mut(key).set_expire(key, expire_at);
        self.modified(key);
        true
    }

    /// Records that `key` changed: fails the EXEC of clients watching it and wakes clients
    /// blocked on it.
    pub fn modified(&mut self, key: &[u8]) {
        self.dirty += 1;
        self.keyspace_mut(key).touch(key);
        if self.db.blocking().any() {
            self.signalled.push(Blob::new(key));
        }
    }

    /// Removes `key` if its collection became empty (Redis never keeps empty collections).
    pub fn remove_if_empty(&mut self, key: &[u8]) {
        if self.value(key).is_some_and(|v| v.is_empty()) {
            self.keyspace_mut(key).remove(key);
        }
    }

    /// Asks the caller to block on `keys` until `deadline_ms` (None: forever).
    pub fn block_on(&mut self, keys: Vec<Blob>, deadline_ms: Option<u64>) {
        self.block = Some(BlockOn { keys, deadline_ms });
    }

    /// Returns true inside MULTI, where blocking commands answer at once instead of blocking.
    pub fn in_multi(&self) -> bool {
        self.in_multi
    }

    /// The largest string a command may create (`proto-max-bulk-len`).
    pub fn max_bulk_len(&self) -> usize {
        self.db.config().max_bulk_len.load(Ordering::Relaxed)
    }
}

macro_rules! typed_access {
    ($get:ident, $get_mut:ident, $variant:ident, $ty:ty) => {
        impl Exec<'_> {
            /// The value of `key` if it has this type; WRONGTYPE if it has another.
            pub fn $get(&mut self, key: &[u8]) -> Result<Option<&$ty>, CommandError> {
                match self.lookup(key).map(|e| &e.value) {
                    None => Ok(None),
                    Some(Value::$variant(v)) => Ok(Some(v)),
                    Some(_) => Err(CommandError::WrongType),
                }
            }

            /// The value of `key` for writing if it has this type; WRONGTYPE otherwise.
            pub fn $get_mut(&mut self, key: &[u8]) -> Result<Option<&mut $ty>, CommandError> {
                match self.value_mut(key) {
                    None => Ok(None),
                    Some(Value::$variant(v)) => Ok(Some(v)),
                    Some(_) => Err(CommandError::WrongType),
                }
            }
        }
    };
}

impl Exec<'_> {
    /// The string at `key`; WRONGTYPE for another type.
    pub fn string(&mut self, key: &[u8]) -> Result<Option<&Blob>, CommandError> {
        match self.lookup(key).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Str(v, _)) => Ok(Some(v)),
            Some(_) => Err(CommandError::WrongType),
        }
    }

    /// The string at `key` for an in-place change (APPEND, SETRANGE, SETBIT...), which makes
    /// it a `raw` string as in Redis; WRONGTYPE for another type.
    pub fn string_mut(&mut self, key: &[u8]) -> Result<Option<&mut Blob>, CommandError> {
        match self.value_mut(key) {
            None => Ok(None),
            Some(Value::Str(v, kind)) => {
                *kind = StrKind::Raw;
                Ok(Some(v))
            }
            Some(_) => Err(CommandError::WrongType),
        }
    }

    /// Returns WRONGTYPE if `key` holds something other than a string (a write's type check
    /// that changes nothing).
    pub fn check_string(&mut self, key: &[u8]) -> Result<bool, CommandError> {
        match self.value_mut(key) {
            None => Ok(false),
            Some(Value::Str(..)) => Ok(true),
            Some(_) => Err(CommandError::WrongType),
        }
    }
}
typed_access!(list, list_mut, List, ListValue);
typed_access!(hash, hash_mut, Hash, HashValue);
typed_access!(set, set_mut, Set, SetValue);
typed_access!(zset, zset_mut, ZSet, SortedSet);
