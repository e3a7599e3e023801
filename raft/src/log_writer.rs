//! The threads that write every group's log operations to RocksDB, many at a time.
//!
//! Groups queue their appends, truncations, purges, commit marks and votes; the writer takes
//! everything queued and writes it as one RocksDB write batch, unsynced; the syncer fsyncs the
//! WAL once for every batch written before it started, and only then reports appends flushed
//! to openraft and votes saved. Many groups writing at once thus share one fsync (group
//! commit), the CPU work of a batch (encoding, the WAL write, the memtable insert) overlaps the
//! previous batch's fsync, and the threads that run the raft groups and the clients never wait
//! on RocksDB: the log stays readable meanwhile through each group's `LogTail`.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use parking_lot::{Condvar, Mutex};
use rocksdb::{WriteBatch, DB};
use tokio::sync::oneshot;

use crate::log_store::{
    decode, encode, log_key, meta_key, CF_LOGS, CF_META, META_COMMITTED, META_PURGED, META_VOTE,
};
use crate::log_tail::{LogTail, Seq};
use crate::typ::{Entry, GroupId, LogId, TypeConfig, Vote};

/// One operation queued for the writer, in the order its group issued it.
pub(crate) enum LogOp {
    /// Entries to add; `flushed` is told once they are durable.
    Append {
        group: GroupId,
        entries: Vec<Entry>,
        flushed: IOFlushed<TypeConfig>,
        written: TailWrite,
    },
    /// Remove every entry from `first_removed` on.
    Truncate {
        group: GroupId,
        first_removed: u64,
        written: TailWrite,
    },
    /// Remove every entry up to `log_id`, inclusive, and remember it as purged.
    Purge { group: GroupId, log_id: LogId },
    /// The group's commit index (not fsynced on its own: a lost one is recomputed).
    Committed {
        group: GroupId,
        committed: Option<LogId>,
    },
    /// The group's vote; `done` is told once it is durable.
    Vote {
        group: GroupId,
        vote: Vote,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Nothing to write; `done` is told once everything queued before it is written.
    Barrier { done: oneshot::Sender<()> },
}

/// The tail that an operation changed, to be told when RocksDB has the change.
pub(crate) struct TailWrite {
    pub tail: Arc<Mutex<LogTail>>,
    pub seq: Seq,
}

impl LogOp {
    /// Someone waits for this operation to be written.
    fn is_urgent(&self) -> bool {
        matches!(
            self,
            LogOp::Append { .. } | LogOp::Vote { .. } | LogOp::Barrier { .. }
        )
    }

    /// Reports the operation failed without writing it.
    pub(crate) fn fail(self, error: &str) {
        match self {
            LogOp::Append { flushed, .. } => flushed.io_completed(Err(io::Error::other(error))),
            LogOp::Vote { done, .. } => {
                let _ = done.send(Err(io::Error::other(error)));
            }
            // A dropped barrier tells its waiter that the writer is gone.
            LogOp::Barrier { .. }
            | LogOp::Truncate { .. }
            | LogOp::Purge { .. }
            | LogOp::Committed { .. } => {}
        }
    }
}

/// Counters of the writer's durability work.
pub(crate) struct Counters {
    pub appends: AtomicU64,
    pub fsyncs: AtomicU64,
    /// How long each synced write took.
    pub fsync_seconds: prometheus::Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        let fsync_seconds = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "autocache_raft_log_fsync_seconds",
                "Duration of each raft log WAL fsync, covering every batch of operations \
                 written before it.",
            )
            .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid histogram");
        Counters {
            appends: AtomicU64::default(),
            fsyncs: AtomicU64::default(),
            fsync_seconds,
        }
    }
}

/// The writer's inbox: operations queued by every group, in order.
///
/// Queuing never makes a system call unless the writer is asleep waiting for work and the
/// operation has a waiter (an append, a vote, a barrier) or is the first one queued: the
/// others (commit marks, truncations, purges) ride along with the next batch, or are written
/// after `LAZY_WRITE`.
#[derive(Default)]
pub(crate) struct LogQueue {
    inbox: Mutex<Inbox>,
    wake: Condvar,
}

#[derive(Default)]
struct Inbox {
    ops: Vec<LogOp>,
    /// How many of `ops` have a waiter.
    urgent: usize,
    /// The writer is waiting for work and must be woken for urgent operations.
    idle: bool,
    closed: bool,
}

/// How long operations without a waiter may stay queued when nothing else is.
const LAZY_WRITE: Duration = Duration::from_millis(100);

impl LogQueue {
    /// Queues an operation, or fails it if the writer is gone.
    pub(crate) fn push(&self, op: LogOp, writer_gone: &str) {
        let urgent = op.is_urgent();
        let mut inbox = self.inbox.lock();
        if inbox.closed {
            drop(inbox);
            op.fail(writer_gone);
            return;
        }
        inbox.ops.push(op);
        inbox.urgent += usize::from(urgent);
        // An idle writer with nothing queued sleeps until woken: the first operation wakes
        // it, so that one without a waiter is still written within `LAZY_WRITE`.
        let wake = inbox.idle && (urgent || inbox.ops.len() == 1);
        if wake {
            inbox.idle = false;
        }
        drop(inbox);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Lets the writer finish what is queued and stop.
    pub(crate) fn close(&self) {
        self.inbox.lock().closed = true;
        self.wake.notify_one();
    }

    /// Waits for the next batch to write: everything queued; None once closed and drained.
    ///
    /// It does not linger for more: operations queued while one batch is being fsynced form
    /// the next, so the groups' work overlaps the disk's. (Lingering until the queue was
    /// quiet, to gather each burst whole, kept the node's worker idle through every fsync:
    /// durable SET from 50 clients ran at 53k/s with it, 65-68k/s without, with three times
    /// the fsyncs, on this machine's disk.)
    fn next_batch(&self) -> Option<Vec<LogOp>> {
        let mut inbox = self.inbox.lock();
        // Operations without a waiter wait up to `LAZY_WRITE` for one with a waiter to ride
        // along with; an empty queue waits for the first operation (an idle node's writer
        // never wakes on its own).
        while inbox.urgent == 0 && !inbox.closed {
            inbox.idle = true;
            if inbox.ops.is_empty() {
                self.wake.wait(&mut inbox);
            } else if self.wake.wait_for(&mut inbox, LAZY_WRITE).timed_out() {
                break;
            }
        }
        inbox.idle = false;
        if inbox.closed && inbox.ops.is_empty() {
            return None;
        }
        inbox.urgent = 0;
        Some(std::mem::take(&mut inbox.ops))
    }
}

/// Writes queued operations until the queue is closed and drained, with a syncer thread
/// (owned here, joined before returning) making them durable and telling their waiters.
pub(crate) fn run(db: &DB, counters: &Counters, queue: &LogQueue, teller: Teller) {
    let unsynced = Unsynced::default();
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn_scoped(scope, || sync_written(db, counters, &unsynced, teller))
            .expect("spawn the raft log syncer thread");
        while let Some(ops) = queue.next_batch() {
            let result = write(db, &ops);
            if let Err(error) = &result {
                tracing::error!(%error, operations = ops.len(), "raft log write failed");
            }
            unsynced.push(Written { ops, result });
        }
        unsynced.close();
    });
}

/// A batch the writer wrote to RocksDB (or failed to), not yet reported to its waiters.
struct Written {
    ops: Vec<LogOp>,
    /// Whether some operation must be durable before it is reported; or why the write failed.
    result: Result<bool, String>,
}

/// Batches written and waiting for the syncer, in the order they were written.
#[derive(Default)]
struct Unsynced {
    state: Mutex<UnsyncedState>,
    wake: Condvar,
}

#[derive(Default)]
struct UnsyncedState {
    batches: Vec<Written>,
    closed: bool,
}

impl Unsynced {
    fn push(&self, batch: Written) {
        self.state.lock().batches.push(batch);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
    }

    /// Every batch written so far, waiting for one; None once closed and drained.
    fn take(&self) -> Option<Vec<Written>> {
        let mut state = self.state.lock();
        while state.batches.is_empty() && !state.closed {
            self.wake.wait(&mut state);
        }
        if state.batches.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut state.batches))
    }
}

/// Fsyncs the WAL once for every batch written before the fsync starts, then tells their
/// operations' waiters, in order, until the writer is done.
///
/// RocksDB's `SyncWAL` runs alongside unsynced writes and makes durable every write that
/// returned before it was called, which is what lets the writer go on meanwhile.
fn sync_written(db: &DB, counters: &Counters, unsynced: &Unsynced, teller: Teller) {
    while let Some(batches) = unsynced.take() {
        let must_sync = batches.iter().any(|batch| batch.result == Ok(true));
        let synced = if must_sync {
            let started = Instant::now();
            let synced = db.flush_wal(true).map_err(|e| e.to_string());
            match &synced {
                Ok(()) => {
                    counters
                        .fsync_seconds
                        .observe(started.elapsed().as_secs_f64());
                    counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => tracing::error!(%error, "raft log fsync failed"),
            }
            synced
        } else {
            Ok(())
        };
        let mut outcomes = Vec::new();
        for batch in batches {
            let result = batch.result.and_then(|_| synced.clone());
            complete(counters, batch.ops, result, &mut outcomes);
        }
        teller.tell(outcomes);
    }
}

/// Tells the waiters of written operations (openraft, for appends) how their write went.
///
/// Telling openraft an append is durable wakes the task that forwards the group's IO
/// completions to its core. Woken from the syncer thread, every wake-up is a remote schedule
/// on the runtime and each one a syscall to unpark it: ~35,000 a second under unpipelined SET,
/// eight per fsync. So when the store is opened inside a runtime, a task of that runtime tells
/// the waiters instead, and the syncer wakes it once per fsync (unpipelined SET: ~5% less CPU
/// per write; throughput within the noise).
pub(crate) enum Teller {
    /// No runtime at open: the syncer tells the waiters itself.
    Inline,
    /// The task that tells them; it ends when the syncer drops this sender.
    Task(tokio::sync::mpsc::UnboundedSender<Vec<Outcome>>),
}

impl Teller {
    /// A teller on the current runtime, if there is one.
    pub(crate) fn start() -> Teller {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Teller::Inline;
        };
        let (sender, mut batches) = tokio::sync::mpsc::unbounded_channel::<Vec<Outcome>>();
        runtime.spawn(async move {
            while let Some(outcomes) = batches.recv().await {
                tell(outcomes);
            }
        });
        Teller::Task(sender)
    }

    fn tell(&self, outcomes: Vec<Outcome>) {
        if outcomes.is_empty() {
            return;
        }
        match self {
            Teller::Task(sender) => {
                // The task is gone only with its runtime: then tell them here.
                if let Err(unsent) = sender.send(outcomes) {
                    tell(unsent.0);
                }
            }
            Teller::Inline => tell(outcomes),
        }
    }
}

/// Writes `ops` in order as one unsynced batch; returns whether any of them must be durable
/// before it is reported.
fn write(db: &DB, ops: &[LogOp]) -> Result<bool, String> {
    let (logs, meta) = families(db);
    let mut batch = WriteBatch::default();
    let mut sync = false;
    for op in ops {
        match op {
            LogOp::Append { group, entries, .. } => {
                for entry in entries {
                    let value = encode(entry).map_err(|e| e.to_string())?;
                    batch.put_cf(logs, log_key(*group, entry.index()), value);
                }
                sync = true;
            }
            LogOp::Truncate {
                group,
                first_removed,
                ..
            } => {
                batch.delete_range_cf(
                    logs,
                    log_key(*group, *first_removed),
                    log_key(*group, u64::MAX),
                );
                batch.delete_cf(logs, log_key(*group, u64::MAX));
            }
            LogOp::Purge { group, log_id } => {
                // A purge reads the group's previous purge point: RocksDB must have what came
                // before it.
                if !batch.is_empty() {
                    db.write(std::mem::take(&mut batch))
                        .map_err(|e| e.to_string())?;
                }
                purge(db, &mut batch, *group, log_id).map_err(|e| e.to_string())?;
            }
            LogOp::Committed { group, committed } => {
                let value = encode(committed).map_err(|e| e.to_string())?;
                batch.put_cf(meta, meta_key(*group, META_COMMITTED), value);
            }
            LogOp::Vote { group, vote, .. } => {
                let value = encode(vote).map_err(|e| e.to_string())?;
                batch.put_cf(meta, meta_key(*group, META_VOTE), value);
                sync = true;
            }
            LogOp::Barrier { .. } => {}
        }
    }
    db.write(batch).map_err(|e| e.to_string())?;
    Ok(sync)
}

/// The log and meta column families.
fn families(db: &DB) -> (&rocksdb::ColumnFamily, &rocksdb::ColumnFamily) {
    let family = |name| db.cf_handle(name).expect("column family created at open");
    (family(CF_LOGS), family(CF_META))
}

/// Adds to `batch` the deletion of a group's entries up to `log_id` and the new purge point.
///
/// One range tombstone from the previous purge point, not a point delete per entry. Point
/// deletes were chosen while every log read was an iterator, which paid again for each range
/// tombstone in the memtable; log reads are now point lookups (see `LogStore::read_entries`),
/// which RocksDB checks against a cached, fragmented list of the memtable's range tombstones.
/// A purge follows each snapshot, so there are few: under `-P 16` SET about 30 a second.
/// Point deletes cost the writer an iterator step and a memtable insert per entry: with them,
/// snapshots and purges took 10% of the CPU per pipelined SET. With one tombstone: 3.96-4.09 →
/// 3.49-3.74 µs per SET under `-P 16`, and 24 million pipelined writes on one server kept
/// their throughput from the first to the last.
fn purge(db: &DB, batch: &mut WriteBatch, group: GroupId, log_id: &LogId) -> io::Result<()> {
    let (logs, meta) = families(db);
    let previous: Option<LogId> = match db
        .get_cf(meta, meta_key(group, META_PURGED))
        .map_err(|e| io::Error::other(e.to_string()))?
    {
        Some(bytes) => Some(decode(&bytes)?),
        None => None,
    };
    // From the previous purge point, so that the group's tombstones never overlap.
    let from = previous.map_or(0, |id| id.index() + 1);
    let until = log_id.index() + 1;
    if from < until {
        batch.delete_range_cf(logs, log_key(group, from), log_key(group, until));
    }
    batch.put_cf(meta, meta_key(group, META_PURGED), encode(log_id)?);
    Ok(())
}

/// Updates the tails that `ops` changed, and queues in `outcomes` what to tell their waiters.
fn complete(
    counters: &Counters,
    ops: Vec<LogOp>,
    result: Result<(), String>,
    outcomes: &mut Vec<Outcome>,
) {
    for op in ops {
        if result.is_ok() {
            match &op {
                LogOp::Append { written, .. } => {
                    written.tail.lock().written(written.seq);
                    counters.appends.fetch_add(1, Ordering::Relaxed);
                }
                LogOp::Truncate { written, .. } => written.tail.lock().written(written.seq),
                LogOp::Purge { .. }
                | LogOp::Committed { .. }
                | LogOp::Vote { .. }
                | LogOp::Barrier { .. } => {}
            }
        }
        if op.is_urgent() || result.is_err() {
            outcomes.push((op, result.clone()));
        }
    }
}

/// An operation whose waiter is to be told, and how its write and fsync went.
type Outcome = (LogOp, Result<(), String>);

/// Tells each waiter, in order: openraft keeps only a group's latest flush report, so a
/// success reported after a failure would hide the failure.
fn tell(outcomes: Vec<Outcome>) {
    for (op, result) in outcomes {
        match (op, result) {
            (op, Err(error)) => op.fail(&error),
            (LogOp::Append { flushed, .. }, Ok(())) => flushed.io_completed(Ok(())),
            (LogOp::Vote { done, .. }, Ok(())) => {
                let _ = done.send(Ok(()));
            }
            (LogOp::Barrier { done }, Ok(())) => {
                let _ = done.send(());
            }
            (LogOp::Truncate { .. } | LogOp::Purge { .. } | LogOp::Committed { .. }, Ok(())) => {}
        }
    }
}
