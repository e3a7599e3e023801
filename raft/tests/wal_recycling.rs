//! The log store recycles RocksDB's WAL files (see `RECYCLED_WALS` in `log_store.rs`): once
//! old WALs are overwritten by new ones, a reopened store still holds exactly the entries it
//! acknowledged, none lost and no stale record from a recycled file's previous life replayed.

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::blank_ent;
use openraft::type_config::TypeConfigExt;
use raft::{LogDb, Op, Request, TypeConfig};

/// Bytes of each entry's value: large, so that the WALs rotate after a few thousand entries.
const VALUE_BYTES: usize = 64 << 10;
/// Enough entries (~320 MiB) to fill the log memtable and the WAL cap several times over.
const ENTRIES: u64 = 5_000;
const BATCH: u64 = 50;

type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;

/// Entry `index`: a SET whose key and value both name the index.
fn entry(index: u64) -> Entry {
    let mut value = vec![(index % 251) as u8; VALUE_BYTES];
    value[..8].copy_from_slice(&index.to_be_bytes());
    let request = Request {
        now_ms: 1,
        seed: index,
        op: Op::Command(vec![
            Bytes::from_static(b"SET"),
            Bytes::from(format!("key:{index}")),
            Bytes::from(value),
        ])
        .into(),
    };
    Entry::new_normal(blank_ent::<TypeConfig>(1, 1, index).log_id(), request)
}

/// How many times RocksDB reported reusing a recycled WAL, from its info log.
fn recycled_wals(dir: &std::path::Path) -> usize {
    let log = std::fs::read_to_string(dir.join("LOG")).unwrap();
    log.matches("from recycle list").count()
}

#[test]
fn entries_written_over_recycled_wals_survive_a_reopen_exactly() {
    // On disk (the target directory): the filesystem RocksDB recycles WALs on in production.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = LogDb::open(dir.path()).unwrap();
        let mut store = db.group(1);
        for first in (1..=ENTRIES).step_by(BATCH as usize) {
            let batch: Vec<_> = (first..first + BATCH).map(entry).collect();
            let (tx, rx) = TypeConfig::oneshot();
            store.append(batch, IOFlushed::signal(tx)).await.unwrap();
            rx.await.unwrap().unwrap();
        }
        // Drop the store and the db: the writer thread finishes and RocksDB closes.
        drop(store);
        drop(db);
    });
    let recycled = recycled_wals(dir.path());
    assert!(
        recycled > 0,
        "no WAL was recycled while writing {ENTRIES} entries: the test covers nothing"
    );

    runtime.block_on(async {
        let db = LogDb::open(dir.path()).unwrap();
        let mut store = db.group(1);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(
            state.last_log_id.map(|id| id.index()),
            Some(ENTRIES),
            "last entry after reopen"
        );
        for first in (1..=ENTRIES).step_by(BATCH as usize) {
            let held = store
                .try_get_log_entries(first..first + BATCH)
                .await
                .unwrap();
            let expected: Vec<_> = (first..first + BATCH).map(entry).collect();
            assert!(
                held == expected,
                "entries {first}..{} differ after reopen",
                first + BATCH
            );
        }
    });
    println!("{ENTRIES} entries, {recycled} recycled WALs reused");
}
