//! Group commit: appends from many groups at once share WAL fsyncs, and an append is reported
//! durable only after an fsync that started after it.

use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::blank_ent;
use openraft::type_config::TypeConfigExt;
use raft::{LogDb, TypeConfig};

#[test]
fn concurrent_appends_share_fsyncs() {
    const GROUPS: u32 = 16;
    const ENTRIES: u64 = 100;
    // On disk (the target directory), where an fsync costs what it costs in production.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let writers: Vec<_> = (0..GROUPS)
            .map(|group| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut store = db.group(group);
                    for index in 1..=ENTRIES {
                        let before = db.stats().fsyncs;
                        let (tx, rx) = TypeConfig::oneshot();
                        store
                            .append([blank_ent::<TypeConfig>(1, 1, index)], IOFlushed::signal(tx))
                            .await
                            .unwrap();
                        rx.await.unwrap().unwrap();
                        assert!(
                            db.stats().fsyncs > before,
                            "append {index} of group {group} reported durable without an fsync after it"
                        );
                    }
                    let entries = store.try_get_log_entries(1..=ENTRIES).await.unwrap();
                    assert_eq!(entries.len() as u64, ENTRIES, "group {group} log");
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
    });
    let stats = db.stats();
    assert_eq!(stats.appends, GROUPS as u64 * ENTRIES);
    assert!(
        stats.fsyncs * 2 <= stats.appends,
        "{} fsyncs for {} concurrent appends: appends do not share fsyncs",
        stats.fsyncs,
        stats.appends
    );
    println!("{} appends, {} fsyncs", stats.appends, stats.fsyncs);
}

/// A store opened inside a runtime tells its appends' waiters from a task of that runtime
/// (one wake-up per fsync); once that runtime is gone, the syncer tells them itself.
#[test]
fn appends_are_reported_from_the_opening_runtime_and_after_it_is_gone() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let current_thread = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let append = |db: std::sync::Arc<LogDb>, index: u64| async move {
        let mut store = db.group(0);
        let (tx, rx) = TypeConfig::oneshot();
        store
            .append(
                [blank_ent::<TypeConfig>(1, 1, index)],
                IOFlushed::signal(tx),
            )
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .unwrap_or_else(|_| panic!("append {index} never reported durable"))
            .unwrap()
            .unwrap();
    };
    let opening = current_thread();
    let db = opening.block_on(async { LogDb::open(dir.path()).unwrap() });
    opening.block_on(append(db.clone(), 1));
    drop(opening);
    current_thread().block_on(append(db.clone(), 2));
    assert_eq!(db.stats().appends, 2);
}
