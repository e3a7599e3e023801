//! Purging a group's log: a few entries at a time and millions at once (each purge one range
//! tombstone from the previous purge point, see `log_writer::purge`), both leaving exactly the
//! entries after the purge point, across a reopen.

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::blank_ent;
use openraft::type_config::TypeConfigExt;
use raft::{LogDb, TypeConfig};

const ENTRIES: u64 = 150_000;

async fn append_all(db: &std::sync::Arc<LogDb>, group: u32) {
    let mut store = db.group(group);
    let entries: Vec<_> = (1..=ENTRIES)
        .map(|index| blank_ent::<TypeConfig>(1, 1, index))
        .collect();
    let (tx, rx) = TypeConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

async fn purge_to(db: &std::sync::Arc<LogDb>, group: u32, index: u64) {
    let mut store = db.group(group);
    store
        .purge(blank_ent::<TypeConfig>(1, 1, index).log_id())
        .await
        .unwrap();
}

/// The indices `group`'s log holds in `range`, read from a freshly opened store.
async fn held(
    db: &std::sync::Arc<LogDb>,
    group: u32,
    range: std::ops::RangeInclusive<u64>,
) -> Vec<u64> {
    let mut store = db.group(group);
    let entries = store.try_get_log_entries(range).await.unwrap();
    entries.iter().map(|entry| entry.index()).collect()
}

#[test]
fn large_and_small_purges_leave_exactly_the_entries_after_them() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = LogDb::open(dir.path()).unwrap();
        // Group 2 is a neighbour whose keys sort right after group 1's: a range delete must
        // not reach them.
        append_all(&db, 1).await;
        append_all(&db, 2).await;
        // More than the range threshold at once, then a few more entries.
        purge_to(&db, 1, 120_000).await;
        db.group(1).get_log_state().await.unwrap();
        assert_eq!(
            held(&db, 1, 119_999..=120_002).await,
            vec![120_001, 120_002]
        );
        purge_to(&db, 1, 120_050).await;
        let mut store = db.group(1);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|id| id.index()), Some(120_050));
        assert_eq!(state.last_log_id.map(|id| id.index()), Some(ENTRIES));
    });
    // Reopened, every read comes from RocksDB.
    runtime.block_on(async {
        let db = LogDb::open(dir.path()).unwrap();
        let mut store = db.group(1);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|id| id.index()), Some(120_050));
        assert_eq!(state.last_log_id.map(|id| id.index()), Some(ENTRIES));
        assert_eq!(held(&db, 1, 1..=10).await, Vec::<u64>::new());
        assert_eq!(held(&db, 1, 119_990..=120_050).await, Vec::<u64>::new());
        let kept = held(&db, 1, 120_051..=ENTRIES).await;
        assert_eq!(kept.len() as u64, ENTRIES - 120_050);
        assert_eq!(kept.first(), Some(&120_051));
        let neighbour = held(&db, 2, 1..=ENTRIES).await;
        assert_eq!(neighbour.len() as u64, ENTRIES, "group 2 lost entries");
    });
}
