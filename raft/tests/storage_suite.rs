//! openraft's storage compliance suite, run on AutoCache's RocksDB log store and state machine.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use raft::typ::StorageError;
use raft::{LogDb, LogStore, StateMachine, TypeConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir =
            tempfile::tempdir().map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let store = LogDb::open(dir.path())
            .map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let engine = Arc::new(tiering::Db::new(4));
        // A group other than 0, so that key prefixes are exercised.
        Ok((dir, store.group(3), StateMachine::new(engine, 3, store)))
    }
}

#[test]
fn openraft_storage_compliance() {
    TypeConfig::run(async {
        Suite::test_all(Builder)
            .await
            .expect("storage suite passes");
    });
}
