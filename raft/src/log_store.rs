//! The raft log of every group of a node, in one RocksDB.
//!
//! Every change to a group's log is queued for the log writer thread (`log_writer`), which
//! writes whatever is queued in one batch and one WAL fsync (group commit), and only then
//! reports appends flushed and votes saved to openraft. Until then each group's `LogTail`
//! answers reads of what RocksDB does not have yet, so the log is readable as soon as an
//! append returns, as openraft requires.
//!
//! Keys are prefixed by the group id (big endian), so one group's log is a contiguous range.

use std::collections::HashMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, Range, RangeBounds};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use parking_lot::Mutex;
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::log_tail::{LogTail, TailRead};
use crate::log_writer::{self, Counters, LogOp, LogQueue, TailWrite};
use crate::typ::{Entry, GroupId, LogId, SnapshotMeta, TypeConfig, Vote};

pub(crate) const CF_LOGS: &str = "logs";
pub(crate) const CF_META: &str = "meta";
const CF_SNAPSHOTS: &str = "snapshots";
/// Room for a snapshot's metadata (its last log id, membership and id) in front of its data.
const SNAPSHOT_META_ROOM: usize = 1024;

pub(crate) const META_VOTE: u8 = 1;
pub(crate) const META_COMMITTED: u8 = 2;
pub(crate) const META_PURGED: u8 = 3;
/// Set when this node stopped replicating the group: its state was wiped, and a restart must not
/// start the group again from the static placement.
const META_RETIRED: u8 = 4;

/// Longest range of entries read with point lookups rather than an iterator.
const MAX_POINT_READS: u64 = 4096;

pub(crate) fn log_key(group: GroupId, index: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&group.to_be_bytes());
    key[4..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Obsolete WAL files kept to be overwritten by later WALs instead of deleted.
///
/// Every acknowledged write waits for a WAL fsync. Appending to a fresh file makes each
/// fdatasync also commit the file's new size and block map to the ext4 journal; overwriting a
/// recycled file flushes the data alone. Measured on this project's VM under unpipelined SET,
/// once the WALs rotate: mean fsync 186-240 µs → 111-172 µs. RocksDB's recyclable record
/// format names the WAL in every record, so records left from the file's previous life are
/// never replayed (point-in-time recovery, the default mode, supports it). Costs up to this
/// many WALs of disk.
const RECYCLED_WALS: usize = 2;

/// The WAL size at which RocksDB flushes the column families holding the oldest WAL.
///
/// The votes and snapshot metadata take few writes, so their memtables rarely fill and would
/// keep every WAL since their last flush alive: RocksDB's default cap is four times the
/// column families' write buffers, 1.5 GiB, all replayed on restart and never recycled. 128 MiB
/// bounds the replay and lets old WALs be recycled.
const MAX_WAL_BYTES: u64 = 128 << 20;

/// Options of the log column family.
///
/// Every group appends its entries in index order, but the groups' appends interleave in
/// each batch, so each memtable insert searched the skiplist from the top (a third of the
/// writer thread's time). An insert hint per group id (the keys' first 4 bytes) makes each
/// insert start where the group's previous one ended.
fn log_family_options() -> Result<Options, rocksdb::Error> {
    Options::default()
        .get_options_from_string("memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.4")
}

pub(crate) fn meta_key(group: GroupId, tag: u8) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[..4].copy_from_slice(&group.to_be_bytes());
    key[4] = tag;
    key
}

pub(crate) fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Encodes `value` at the end of `out`.
fn encode_into<T: Serialize>(value: &T, out: Vec<u8>) -> io::Result<Vec<u8>> {
    postcard::to_extend(value, out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn db_error(e: rocksdb::Error) -> io::Error {
    io::Error::other(e.to_string())
}

const WRITER_GONE: &str = "raft log writer stopped";

/// Counters of the log store's durability work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogDbStats {
    /// Appends reported durable.
    pub appends: u64,
    /// WAL fsyncs done (each covers every operation written before it).
    pub fsyncs: u64,
}

/// A node's raft storage: every group's log, vote and snapshot, in one RocksDB.
pub struct LogDb {
    db: Arc<DB>,
    counters: Arc<Counters>,
    /// Operations for the writer thread, closed on drop, which ends the writer once it has
    /// written what was queued.
    queue: Arc<LogQueue>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Each group's in-memory log tail, shared by its log store and readers.
    tails: Mutex<HashMap<GroupId, Arc<Mutex<LogTail>>>>,
}

impl LogDb {
    /// Opens (or creates) the store in `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Arc<LogDb>, rocksdb::Error> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_recycle_log_file_num(RECYCLED_WALS);
        options.set_max_total_wal_size(MAX_WAL_BYTES);
        let families = [
            ColumnFamilyDescriptor::new(CF_LOGS, log_family_options()?),
            ColumnFamilyDescriptor::new(CF_META, Options::default()),
            ColumnFamilyDescriptor::new(CF_SNAPSHOTS, Options::default()),
        ];
        let db = Arc::new(DB::open_cf_descriptors(&options, path, families)?);
        let queue = Arc::new(LogQueue::default());
        let writer_queue = queue.clone();
        let writer_db = db.clone();
        let counters = Arc::new(Counters::default());
        let writer_counters = counters.clone();
        let teller = log_writer::Teller::start();
        let writer = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || log_writer::run(&writer_db, &writer_counters, &writer_queue, teller))
            .expect("spawn the raft log writer thread");
        Ok(Arc::new(LogDb {
            db,
            counters,
            queue,
            writer: Mutex::new(Some(writer)),
            tails: Mutex::default(),
        }))
    }

    /// The log store of one group.
    pub fn group(self: &Arc<Self>, group: GroupId) -> LogStore {
        let tail = self.tails.lock().entry(group).or_default().clone();
        LogStore {
            store: self.clone(),
            group,
            tail,
        }
    }

    /// The histogram of WAL fsync durations, for a metrics registry.
    pub fn fsync_histogram(&self) -> prometheus::Histogram {
        self.counters.fsync_seconds.clone()
    }

    /// How much durability work the store did.
    pub fn stats(&self) -> LogDbStats {
        LogDbStats {
            appends: self.counters.appends.load(Ordering::Relaxed),
            fsyncs: self.counters.fsyncs.load(Ordering::Relaxed),
        }
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    fn get_meta<T: DeserializeOwned>(&self, group: GroupId, tag: u8) -> io::Result<Option<T>> {
        match self
            .db
            .get_cf(self.cf(CF_META), meta_key(group, tag))
            .map_err(db_error)?
        {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Durably stores a group's latest snapshot (replacing the previous one).
    pub fn save_snapshot(
        &self,
        group: GroupId,
        meta: &SnapshotMeta,
        data: &[u8],
    ) -> io::Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .put_cf_opt(
                self.cf(CF_SNAPSHOTS),
                group.to_be_bytes(),
                encode_into(
                    &(meta, data),
                    // Sized up front: grown by doubling, a dump of a few megabytes was copied
                    // a dozen times and every growth faulted in fresh pages.
                    Vec::with_capacity(data.len() + SNAPSHOT_META_ROOM),
                )?,
                &options,
            )
            .map_err(db_error)
    }

    /// A group's latest snapshot, if it has one.
    pub fn load_snapshot(&self, group: GroupId) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        match self
            .db
            .get_cf(self.cf(CF_SNAPSHOTS), group.to_be_bytes())
            .map_err(db_error)?
        {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Returns true if this node holds raft state of `group`: a vote or log entries.
    pub fn has_group(&self, group: GroupId) -> io::Result<bool> {
        if self.get_meta::<Vote>(group, META_VOTE)?.is_some() {
            return Ok(true);
        }
        let start = log_key(group, 0);
        let mut iter = self.db.iterator_cf(
            self.cf(CF_LOGS),
            IteratorMode::From(&start, Direction::Forward),
        );
        Ok(match iter.next() {
            Some(item) => item.map_err(db_error)?.0[..4] == group.to_be_bytes(),
            None => false,
        })
    }

    /// Returns true if this node stopped replicating `group` (see [`LogDb::retire_group`]).
    pub fn is_retired(&self, group: GroupId) -> io::Result<bool> {
        Ok(self.get_meta::<bool>(group, META_RETIRED)?.unwrap_or(false))
    }

    /// Wipes `group`'s log, vote, commit index and snapshot, and marks it retired, durably.
    /// The group's raft must be stopped: this node was removed from its membership.
    pub async fn retire_group(&self, group: GroupId) -> io::Result<()> {
        // Whatever the stopped raft queued is written first, so nothing lands after the wipe.
        self.written().await?;
        self.tails.lock().remove(&group);
        let mut batch = rocksdb::WriteBatch::default();
        // Group ids stay far below u32::MAX (at most 16384 groups), so `group + 1` exists.
        batch.delete_range_cf(self.cf(CF_LOGS), log_key(group, 0), log_key(group + 1, 0));
        for tag in [META_VOTE, META_COMMITTED, META_PURGED] {
            batch.delete_cf(self.cf(CF_META), meta_key(group, tag));
        }
        batch.delete_cf(self.cf(CF_SNAPSHOTS), group.to_be_bytes());
        batch.put_cf(
            self.cf(CF_META),
            meta_key(group, META_RETIRED),
            encode(&true)?,
        );
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options).map_err(db_error)
    }

    /// Clears `group`'s retired mark: this node is about to replicate it again, from nothing.
    pub fn revive_group(&self, group: GroupId) -> io::Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .delete_cf_opt(self.cf(CF_META), meta_key(group, META_RETIRED), &options)
            .map_err(db_error)
    }

    /// Queues an operation for the writer, or fails it if the writer is gone.
    fn queue(&self, op: LogOp) {
        self.queue.push(op, WRITER_GONE);
    }

    /// Waits until everything queued so far is in RocksDB.
    async fn written(&self) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.queue(LogOp::Barrier { done });
        wait.await.map_err(|_| io::Error::other(WRITER_GONE))
    }

    /// A group's entries in `range` that RocksDB holds, contiguous from the first one present.
    fn read_entries(&self, group: GroupId, range: Range<u64>) -> io::Result<Vec<Entry>> {
        let cf = self.cf(CF_LOGS);
        let mut entries = Vec::new();
        if range.end.saturating_sub(range.start) <= MAX_POINT_READS {
            // A short range (what openraft asks for when applying and replicating) is read
            // with point lookups: an iterator would also step over the tombstones of purged
            // entries still in the memtable, which made every apply slower as the log grew.
            let keys: Vec<[u8; 12]> = range.map(|i| log_key(group, i)).collect();
            for value in self.db.batched_multi_get_cf(cf, &keys, false) {
                match value.map_err(db_error)? {
                    Some(value) => entries.push(decode(&value)?),
                    // The range may start before the log does: a missing entry after the
                    // first present one ends the answer.
                    None if entries.is_empty() => {}
                    None => break,
                }
            }
            return Ok(entries);
        }
        let start = log_key(group, range.start);
        let iter = self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(db_error)?;
            if key.len() != 12 || key[..4] != group.to_be_bytes() {
                break;
            }
            let index = u64::from_be_bytes(key[4..].try_into().expect("12-byte key"));
            if index >= range.end {
                break;
            }
            entries.push(decode(&value)?);
        }
        Ok(entries)
    }
}

impl Drop for LogDb {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

/// One group's log, vote and commit index.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<LogDb>,
    group: GroupId,
    tail: Arc<Mutex<LogTail>>,
}

impl LogStore {
    fn index_range(range: &impl RangeBounds<u64>) -> Range<u64> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        start..end
    }

    fn tail_write(&self, seq: crate::log_tail::Seq) -> TailWrite {
        TailWrite {
            tail: self.tail.clone(),
            seq,
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let TailRead { from_db, cached } = self.tail.lock().read(Self::index_range(&range));
        let mut entries = if from_db.is_empty() {
            Vec::new()
        } else {
            self.store.read_entries(self.group, from_db.clone())?
        };
        // The tail follows RocksDB's part only if that part reached it (no hole).
        if entries.last().is_none_or(|e| e.index() + 1 == from_db.end) {
            entries.extend(cached);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        // Saving a vote waits for its write: RocksDB has the latest.
        self.store.get_meta(self.group, META_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        self.store.written().await?;
        let last_purged: Option<LogId> = self.store.get_meta(self.group, META_PURGED)?;
        let db = &self.store.db;
        let end = log_key(self.group, u64::MAX);
        let mut iter = db.iterator_cf(
            self.store.cf(CF_LOGS),
            IteratorMode::From(&end, Direction::Reverse),
        );
        let last = match iter.next() {
            Some(item) => {
                let (key, value) = item.map_err(db_error)?;
                if key.len() == 12 && key[..4] == self.group.to_be_bytes() {
                    let entry: Entry = decode(&value)?;
                    Some(entry.log_id())
                } else {
                    None
                }
            }
            None => None,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let (done, wait) = oneshot::channel();
        self.store.queue(LogOp::Vote {
            group: self.group,
            vote: *vote,
            done,
        });
        wait.await
            .unwrap_or_else(|_| Err(io::Error::other(WRITER_GONE)))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.store.queue(LogOp::Committed {
            group: self.group,
            committed,
        });
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        self.store.written().await?;
        Ok(self
            .store
            .get_meta::<Option<LogId>>(self.group, META_COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        // The tail stays locked until the operation is queued, so a group's operations reach
        // the writer in the order the tail saw them.
        let mut tail = self.tail.lock();
        let seq = tail.append(&entries);
        self.store.queue(LogOp::Append {
            group: self.group,
            entries,
            flushed: callback,
            written: self.tail_write(seq),
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let last_kept = last_log_id.map(|id| id.index());
        let mut tail = self.tail.lock();
        let seq = tail.truncate_after(last_kept);
        self.store.queue(LogOp::Truncate {
            group: self.group,
            first_removed: last_kept.map_or(0, |i| i + 1),
            written: self.tail_write(seq),
        });
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut tail = self.tail.lock();
        tail.purge(log_id.index());
        self.store.queue(LogOp::Purge {
            group: self.group,
            log_id,
        });
        Ok(())
    }
}
