//! The raft log of every group of a node, in one RocksDB.
//!
//! Appends write to RocksDB (memtable and WAL, unsynced) before returning, so they are
//! readable at once; durability comes from a flusher thread that fsyncs the WAL once for every
//! append queued since its last fsync and only then reports them flushed to openraft. Many
//! groups appending at the same time thus share one fsync (group commit). Votes are written
//! with a synchronous fsync: they are rare and must be durable before a vote is cast.
//!
//! Keys are prefixed by the group id (big endian), so one group's log is a contiguous range.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use parking_lot::Mutex;
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::typ::{Entry, GroupId, LogId, SnapshotMeta, TypeConfig, Vote};

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const CF_SNAPSHOTS: &str = "snapshots";

const META_VOTE: u8 = 1;
const META_COMMITTED: u8 = 2;
const META_PURGED: u8 = 3;

/// Longest range of entries read with point lookups rather than an iterator.
const MAX_POINT_READS: u64 = 4096;

fn log_key(group: GroupId, index: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&group.to_be_bytes());
    key[4..].copy_from_slice(&index.to_be_bytes());
    key
}

fn meta_key(group: GroupId, tag: u8) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[..4].copy_from_slice(&group.to_be_bytes());
    key[4] = tag;
    key
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn db_error(e: rocksdb::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Counters of the log store's durability work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogDbStats {
    /// Appends reported durable.
    pub appends: u64,
    /// WAL fsyncs done (each covers every append queued before it started).
    pub fsyncs: u64,
}

struct Counters {
    appends: AtomicU64,
    fsyncs: AtomicU64,
    /// How long each WAL fsync took.
    fsync_seconds: prometheus::Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        let fsync_seconds = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "autocache_raft_log_fsync_seconds",
                "Duration of each raft log WAL fsync (one covers every append queued before it).",
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

/// A node's raft storage: every group's log, vote and snapshot, in one RocksDB.
pub struct LogDb {
    db: Arc<DB>,
    counters: Arc<Counters>,
    /// Appends waiting for the next WAL fsync. Dropped (closing the channel) on drop, which
    /// ends the flusher thread.
    flush_queue: Mutex<Option<mpsc::Sender<IOFlushed<TypeConfig>>>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl LogDb {
    /// Opens (or creates) the store in `path` and starts its flusher thread.
    pub fn open(path: &Path) -> Result<Arc<LogDb>, rocksdb::Error> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = [CF_LOGS, CF_META, CF_SNAPSHOTS]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = Arc::new(DB::open_cf_descriptors(&options, path, families)?);
        let (tx, rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        let flush_db = db.clone();
        let counters = Arc::new(Counters::default());
        let flush_counters = counters.clone();
        let flusher = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(&flush_db, &flush_counters, rx))
            .expect("spawn the raft log flusher thread");
        Ok(Arc::new(LogDb {
            db,
            counters,
            flush_queue: Mutex::new(Some(tx)),
            flusher: Mutex::new(Some(flusher)),
        }))
    }

    /// The log store of one group.
    pub fn group(self: &Arc<Self>, group: GroupId) -> LogStore {
        LogStore {
            store: self.clone(),
            group,
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

    fn put_meta<T: Serialize>(
        &self,
        group: GroupId,
        tag: u8,
        value: &T,
        sync: bool,
    ) -> io::Result<()> {
        self.put(CF_META, &meta_key(group, tag), &encode(value)?, sync)
    }

    /// Writes one key, fsynced first if `sync`.
    fn put(&self, family: &str, key: &[u8], value: &[u8], sync: bool) -> io::Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db
            .put_cf_opt(self.cf(family), key, value, &options)
            .map_err(db_error)
    }

    /// Durably stores a group's latest snapshot (replacing the previous one).
    pub fn save_snapshot(
        &self,
        group: GroupId,
        meta: &SnapshotMeta,
        data: &[u8],
    ) -> io::Result<()> {
        self.put(
            CF_SNAPSHOTS,
            &group.to_be_bytes(),
            &encode(&(meta, data))?,
            true,
        )
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

    fn queue_flush(&self, callback: IOFlushed<TypeConfig>) {
        let queue = self.flush_queue.lock();
        match queue.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(callback)) = tx.send(callback) {
                    callback.io_completed(Err(io::Error::other("raft log flusher stopped")));
                }
            }
            None => callback.io_completed(Err(io::Error::other("raft log store closed"))),
        }
    }
}

impl Drop for LogDb {
    fn drop(&mut self) {
        self.flush_queue.lock().take();
        if let Some(flusher) = self.flusher.lock().take() {
            let _ = flusher.join();
        }
    }
}

/// Fsyncs the WAL once per batch of queued appends, then reports them all flushed.
///
/// Writes released by one fsync come back as a burst of appends from many groups a few
/// microseconds apart; fsyncing at the first of them would leave the rest for the next fsync,
/// and every group would wait two fsyncs per write. So the flusher lingers until the queue has
/// been quiet for `QUIET`, at most `MAX_LINGER`: a small delay next to an fsync.
fn flush_loop(db: &DB, counters: &Counters, queue: mpsc::Receiver<IOFlushed<TypeConfig>>) {
    const QUIET: Duration = Duration::from_micros(50);
    const MAX_LINGER: Duration = Duration::from_micros(500);
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        let started = Instant::now();
        while started.elapsed() < MAX_LINGER {
            match queue.recv_timeout(QUIET) {
                Ok(callback) => batch.push(callback),
                Err(_) => break,
            }
        }
        let fsync_started = Instant::now();
        let result = db.flush_wal(true);
        counters
            .fsync_seconds
            .observe(fsync_started.elapsed().as_secs_f64());
        counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        counters
            .appends
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for callback in batch {
            callback.io_completed(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(e.to_string())),
            });
        }
    }
}

/// One group's log, vote and commit index.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<LogDb>,
    group: GroupId,
}

impl LogStore {
    fn first_index(range: &impl RangeBounds<u64>) -> u64 {
        match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let db = &self.store.db;
        let cf = self.store.cf(CF_LOGS);
        let first = Self::first_index(&range);
        let end = match range.end_bound() {
            Bound::Included(&i) => Some(i.saturating_add(1)),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        let mut entries = Vec::new();
        if let Some(end) = end.filter(|&end| end.saturating_sub(first) <= MAX_POINT_READS) {
            // A bounded range (what openraft asks for when applying and replicating) is read
            // with point lookups: an iterator would also step over the tombstones of purged
            // entries still in the memtable, which made every apply slower as the log grew.
            let keys: Vec<[u8; 12]> = (first..end).map(|i| log_key(self.group, i)).collect();
            for value in db.batched_multi_get_cf(cf, &keys, false) {
                match value.map_err(db_error)? {
                    Some(value) => entries.push(decode(&value)?),
                    // Entries are contiguous from the first one present (the range may start
                    // before the log does): a missing one after that ends the answer.
                    None if entries.is_empty() => {}
                    None => break,
                }
            }
            return Ok(entries);
        }
        let start = log_key(self.group, first);
        let iter = db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(db_error)?;
            if key.len() != 12 || key[..4] != self.group.to_be_bytes() {
                break;
            }
            let index = u64::from_be_bytes(key[4..].try_into().expect("12-byte key"));
            if !range.contains(&index) {
                break;
            }
            entries.push(decode(&value)?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.store.get_meta(self.group, META_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
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
        self.store.put_meta(self.group, META_VOTE, vote, true)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced: a committed index lost in a crash is recomputed from a quorum.
        self.store
            .put_meta(self.group, META_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
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
        let cf = self.store.cf(CF_LOGS);
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(cf, log_key(self.group, entry.index()), encode(&entry)?);
        }
        // Readable once written; durable once the flusher's next WAL fsync completes.
        self.store.db.write(batch).map_err(db_error)?;
        self.store.queue_flush(callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let first = last_log_id.map_or(0, |id| id.index() + 1);
        let cf = self.store.cf(CF_LOGS);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf,
            log_key(self.group, first),
            log_key(self.group, u64::MAX),
        );
        batch.delete_cf(cf, log_key(self.group, u64::MAX));
        // Ordered before any later append in the WAL, so made durable by the same fsync.
        self.store.db.write(batch).map_err(db_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let previous: Option<LogId> = self.store.get_meta(self.group, META_PURGED)?;
        let from = previous.map_or(0, |id| id.index() + 1);
        let until = log_id.index() + 1;
        let db = &self.store.db;
        let cf = self.store.cf(CF_LOGS);
        // Point deletes of the entries that exist, not a range delete: openraft purges a few
        // entries at a time, and every range tombstone in the memtable is paid for again by
        // each new iterator (every log read), which slowed writes tenfold over a few minutes.
        let mut batch = WriteBatch::default();
        let start = log_key(self.group, from);
        for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
            let (key, _) = item.map_err(db_error)?;
            if key.len() != 12 || key[..4] != self.group.to_be_bytes() {
                break;
            }
            if u64::from_be_bytes(key[4..].try_into().expect("12-byte key")) >= until {
                break;
            }
            batch.delete_cf(cf, key);
        }
        // The purge point with the deletes: entries at or before it are gone for good.
        batch.put_cf(
            self.store.cf(CF_META),
            meta_key(self.group, META_PURGED),
            encode(&log_id)?,
        );
        db.write(batch).map_err(db_error)
    }
}
