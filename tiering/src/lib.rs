//! The keyspace engine.
//!
//! `tiering` stores keys and values (strings, hashes, lists, sets, sorted sets), runs every
//! data command against them, and keeps deadlines. A command is a deterministic function of
//! the keyspace, its arguments and an [`ExecCtx`] (the caller's clock and random seed), so the
//! same command applied to the same state on two replicas gives the same state and reply. Reads
//! never change state: an expired key reads as absent and is removed only by a write or by the
//! expiry cycle.
//!
//! It knows nothing of connections, clients, protocols versions or replication: `node` (and
//! later `raft`) call [`Db::execute`] with a parsed request.

/// Argument parsing with Redis's rules and error texts.
pub mod args;
/// Slots arriving in a group here, and commands waiting for them.
pub mod arrivals;
/// The byte string type of keys, values and members.
pub mod blob;
/// Clients blocked on keys.
pub mod blocking;
/// An estimate of the memory a keyspace uses.
pub mod byte_meter;
/// Command implementations, one family per file.
pub mod cmd;
/// The engine: routing, locking and running commands.
pub mod db;
/// The deterministic (absolute-deadline) form of writes.
pub mod effect;
/// Command errors with Redis's texts.
pub mod error;
/// A command's access to the locked keyspaces.
pub mod exec;
/// Glob-style pattern matching.
pub mod glob;
/// One slot group's keys.
pub mod keyspace;
/// x87 long-double arithmetic for INCRBYFLOAT.
pub mod long_double;
/// Hash slots.
pub mod slot;
/// Moving slots between groups: the steps their logs apply.
pub mod slot_moves;
/// Sets of hash slots.
pub mod slot_set;
/// A keyspace as bytes, for snapshots.
pub mod snapshot;
/// Stored values.
pub mod value;
/// The sorted set structure.
pub mod zset;

pub use blob::Blob;
pub use db::{Caller, Db, Executed, Watch};
pub use error::{CommandError, CommandResult};
pub use exec::{BlockOn, Exec, ExecCtx};
pub use keyspace::{Keyspace, SlotState};
pub use slot::{slot_of, Slot, SLOT_COUNT};
pub use slot_moves::SlotMoveError;
pub use slot_set::SlotSet;
pub use value::Value;
