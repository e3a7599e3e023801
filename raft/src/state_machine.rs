//! One group's state machine: applies committed requests to the group's keyspace.
//!
//! The keyspace lives in memory (`tiering`), so after a restart the state is rebuilt from the
//! latest snapshot (kept durable in the log store) plus the log after it. The applied log id
//! and the membership move together with the data: they change only in `apply` and
//! `install_snapshot`, and a snapshot is dumped in the same step that reads them.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::TryReadyChunksError;
use futures::TryStreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::{ApplyResponder, EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use resp::{CommandTable, Frame};
use tiering::{Blob, Db, ExecCtx, Watch};

use crate::log_store::LogDb;
use crate::request::{Op, Request, Response, SlotOp};
use crate::slot_calls::GroupSlots;
use crate::typ::{
    Entry, GroupId, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig,
};

/// How many ready entries are applied together, their keys looked up ahead of them.
const PREFETCH_AHEAD: usize = 32;

/// The state machine of one slot group.
pub struct StateMachine {
    db: Arc<Db>,
    /// The keyspace partition of `db` this group's data lives in.
    partition: usize,
    group: GroupId,
    store: Arc<LogDb>,
    applied: Option<LogId>,
    membership: StoredMembership,
    /// The group's clock: the latest `now_ms` of the entries applied. Entries apply at no
    /// earlier time, so a key that expired never comes back when leadership moves to a node
    /// whose clock is behind.
    clock_ms: u64,
    /// The length of the last snapshot dump: the next one is allocated at about that size
    /// instead of growing by doubling (each growth a copy, and fresh pages to fault in, on the
    /// thread that applies the groups' writes).
    last_dump_len: usize,
}

impl StateMachine {
    /// A state machine over group `group` of `db`, persisting snapshots in `store`. It starts
    /// empty; openraft restores it from the latest snapshot and the log.
    pub fn new(db: Arc<Db>, group: GroupId, store: Arc<LogDb>) -> StateMachine {
        StateMachine::over_partition(db, group as usize, group, store)
    }

    /// A state machine of group `group` whose data is partition `partition` of `db` (the
    /// metadata group keeps its own one-partition keyspace).
    pub fn over_partition(
        db: Arc<Db>,
        partition: usize,
        group: GroupId,
        store: Arc<LogDb>,
    ) -> StateMachine {
        StateMachine {
            db,
            partition,
            group,
            store,
            applied: None,
            membership: StoredMembership::default(),
            clock_ms: 0,
            last_dump_len: 0,
        }
    }

    fn apply_entry(&mut self, entry: Entry, responder: Option<ApplyResponder<TypeConfig>>) {
        let log_id = entry.log_id();
        let response = match &entry.payload {
            EntryPayload::Blank => Response::Nothing,
            EntryPayload::Normal(request) => self.apply_request(log_id.index(), request),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(log_id), membership.clone());
                Response::Nothing
            }
        };
        self.applied = Some(log_id);
        if let Some(responder) = responder {
            responder.send(response);
        }
    }

    /// Starts loading into the CPU cache the keyspace entries the commands of `run` name first.
    fn prefetch(&self, run: &[EntryResponder<TypeConfig>]) {
        let keys = run.iter().filter_map(|(entry, _)| match &entry.payload {
            EntryPayload::Normal(request) => match &*request.op {
                // (A long argument is rarely a key, and hashing it would cost more than the
                // miss it might save.)
                Op::Command(args) => args
                    .get(1)
                    .filter(|key| key.len() <= 1024)
                    .map(|key| key.as_ref()),
                _ => None,
            },
            _ => None,
        });
        self.db.prefetch(self.partition, keys);
    }

    fn apply_request(&mut self, index: u64, request: &Request) -> Response {
        self.clock_ms = self.clock_ms.max(request.now_ms);
        let ctx = ExecCtx {
            now_ms: self.clock_ms,
            seed: request.seed,
        };
        let partition = self.partition;
        self.db.begin_apply(partition, index);
        let response = self.run(ctx, &request.op);
        self.db.end_apply(partition, index);
        response
    }

    fn run(&self, ctx: ExecCtx, op: &Op) -> Response {
        let group = self.partition;
        match op {
            Op::Command(args) => match CommandTable::get().lookup_request(args) {
                Some(spec) => {
                    let executed = self.db.execute_in_group(group, spec, args, ctx);
                    match (executed.moved, executed.block) {
                        (Some(slot), _) => Response::NotOwned { slot },
                        (None, Some(on)) => Response::WouldBlock {
                            deadline_ms: on.deadline_ms,
                        },
                        (None, None) => Response::Reply(executed.reply),
                    }
                }
                None => Response::Reply(unknown(args)),
            },
            Op::Transaction { commands, watches } => {
                let table = CommandTable::get();
                let mut specs = Vec::with_capacity(commands.len());
                for a in commands {
                    match table.lookup_request(a) {
                        Some(spec) => specs.push((spec, a.as_slice())),
                        None => return Response::Reply(unknown(a)),
                    }
                }
                let watches: Vec<Watch> = watches
                    .iter()
                    .map(|w| Watch {
                        key: Blob::new(&w.key),
                        expired: w.expired,
                        applied: w.applied,
                    })
                    .collect();
                match self.db.execute_multi(group, &specs, &watches, ctx) {
                    Ok(Some(replies)) => Response::Reply(Frame::Array(replies)),
                    Ok(None) => Response::Reply(Frame::NullArray),
                    Err(slot) => Response::NotOwned { slot },
                }
            }
            Op::Expire(keys) => {
                let removed = self.db.remove_expired(group, keys, ctx.now_ms);
                Response::Reply(Frame::Integer(removed as i64))
            }
            Op::Slots(op) => Response::Reply(self.move_slots(op)),
        }
    }

    /// Applies a step of a slot move: the reply is OK (or the keys added or removed), or why
    /// the step was refused.
    fn move_slots(&self, op: &SlotOp) -> Frame {
        let group = self.partition;
        let done = match op {
            SlotOp::Release { slots, to } => {
                let released = self.db.release_slots(group, slots, *to as usize);
                Ok(released.len())
            }
            SlotOp::Import {
                slot,
                session,
                first,
                page,
            } => {
                let starts: &[u16] = if *first { &[*slot] } else { &[] };
                self.db.import_page(group, *session, &[*slot], starts, page)
            }
            SlotOp::ImportPage {
                session,
                slots,
                starts,
                page,
            } => self.db.import_page(group, *session, slots, starts, page),
            SlotOp::Adopt { slots, session } => self
                .db
                .adopt_slots(group, slots, *session)
                .map(|()| slots.len()),
            SlotOp::Drop { slots } => Ok(self.db.drop_slots(group, slots)),
        };
        match done {
            Ok(count) => Frame::Integer(count as i64),
            Err(refused) => Frame::error(format!("ERR {refused}")),
        }
    }

    /// The snapshot of the group as it is now: a marker, the clock, the slot state, then the
    /// keyspace.
    ///
    /// The keyspace is dumped on a blocking thread, a step of keys at a time (see
    /// `Db::dump_group`), while this group applies nothing: the thread that runs the node's
    /// other groups, their heartbeats and the clients goes on meanwhile. Dumped inline, a group
    /// of a few million keys held all of them up for a fraction of a second per million keys.
    async fn dump(&mut self) -> Vec<u8> {
        let mut data = self.dump_start();
        let (db, partition) = (self.db.clone(), self.partition);
        let dumped = tokio::task::spawn_blocking(move || {
            db.dump_group(partition, &mut data);
            data
        })
        .await;
        let data = match dumped {
            Ok(data) => data,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down and dropped the dump before it ran.
            Err(_cancelled) => {
                let mut data = self.dump_start();
                self.db.dump_group(self.partition, &mut data);
                data
            }
        };
        self.last_dump_len = data.len();
        data
    }

    /// A snapshot's bytes before the keyspace's, in a buffer sized for the whole snapshot.
    fn dump_start(&self) -> Vec<u8> {
        let slots = postcard::to_allocvec(&GroupSlots::of(
            self.group,
            &self.db.slot_state(self.partition),
        ))
        .expect("a slot state serializes");
        let mut data = Vec::with_capacity(self.last_dump_len + self.last_dump_len / 8);
        data.extend_from_slice(SNAPSHOT_MARKER);
        data.extend_from_slice(&self.clock_ms.to_be_bytes());
        data.extend_from_slice(&(slots.len() as u32).to_be_bytes());
        data.extend_from_slice(&slots);
        data
    }

    fn load(&mut self, data: &[u8], index: u64) -> io::Result<()> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        // Snapshots from before slots could move hold the clock and the keyspace only.
        let (slots, rest) = match data.strip_prefix(SNAPSHOT_MARKER) {
            Some(rest) => {
                let (clock, rest) = rest
                    .split_first_chunk::<8>()
                    .ok_or_else(|| invalid("snapshot too short"))?;
                let (len, rest) = rest
                    .split_first_chunk::<4>()
                    .ok_or_else(|| invalid("snapshot too short"))?;
                let len = u32::from_be_bytes(*len) as usize;
                if rest.len() < len {
                    return Err(invalid("snapshot too short"));
                }
                let (slots, keyspace) = rest.split_at(len);
                let slots: GroupSlots =
                    postcard::from_bytes(slots).map_err(|_| invalid("bad slot state"))?;
                (Some(slots.into_state()), (*clock, keyspace))
            }
            None => {
                let (clock, keyspace) = data
                    .split_first_chunk::<8>()
                    .ok_or_else(|| invalid("snapshot too short"))?;
                (None, (*clock, keyspace))
            }
        };
        let (clock, keyspace) = rest;
        if let Some(slots) = slots {
            self.db.set_slot_state(self.partition, slots);
        }
        self.db
            .load_group(self.partition, keyspace, index)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.clock_ms = u64::from_be_bytes(clock);
        Ok(())
    }
}

/// Marks a snapshot that carries the group's slot state.
const SNAPSHOT_MARKER: &[u8; 4] = b"ACSM";

fn unknown(args: &[Bytes]) -> Frame {
    let name = args
        .first()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_default();
    Frame::error(format!("ERR unknown command '{name}'"))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        // Entries come in runs of those ready now, at most PREFETCH_AHEAD at a time: the keys
        // of a run are looked up all at once first, so their cache misses overlap instead of
        // each stalling the apply of its entry (a lookup was 10% of the worker under SET -P 16).
        let mut runs = entries.try_ready_chunks(PREFETCH_AHEAD);
        loop {
            let (run, failed) = match runs.try_next().await {
                Ok(Some(run)) => (run, None),
                Ok(None) => return Ok(()),
                Err(TryReadyChunksError(run, error)) => (run, Some(error)),
            };
            self.prefetch(&run);
            for (entry, responder) in run {
                self.apply_entry(entry, responder);
            }
            if let Some(error) = failed {
                return Err(error);
            }
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Dumped now, between two applies, so the data matches `applied` exactly.
        SnapshotBuilder {
            meta: SnapshotMeta {
                last_log_id: self.applied,
                last_membership: self.membership.clone(),
            },
            data: self.dump().await,
            group: self.group,
            store: self.store.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let index = meta.last_log_id.as_ref().map_or(0, |id| id.index());
        self.load(&data, index)?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.store.save_snapshot(self.group, meta, &data)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .store
            .load_snapshot(self.group)?
            .map(|(meta, data)| Snapshot {
                meta,
                snapshot: SnapshotData::new(data),
            }))
    }
}

/// A snapshot dumped from a group, waiting to be stored.
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    data: Vec<u8>,
    group: GroupId,
    store: Arc<LogDb>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // Storing is a synced RocksDB write of the whole dump: on a blocking thread, so the
        // worker that runs the groups and their clients goes on meanwhile (stored inline, a
        // node's p99 SET latency rose by a third while its groups snapshotted).
        let store = self.store.clone();
        let (group, meta, data) = (
            self.group,
            self.meta.clone(),
            std::mem::take(&mut self.data),
        );
        let data = tokio::task::spawn_blocking(move || {
            store.save_snapshot(group, &meta, &data).map(|()| data)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: SnapshotData::new(data),
        })
    }
}
