//! Joining a running cluster through seeds: a new node given `--join` and `--seeds` (raft
//! addresses of running nodes), but no member list, asks a seed for the cluster's shape (the
//! static member list, groups, replicas), which every node needs identical to compute the
//! same initial placement. A restart reads it from the data directory's `topology.toml`
//! instead, so it needs no seed to be up.

use std::time::Duration;

use anyhow::bail;
use raft::{ClusterShape, ReplicaCall, ReplicaReply};

use crate::config::Config;

/// How long one seed may take to answer.
const SEED_WAIT: Duration = Duration::from_secs(10);

/// How long a joining node keeps asking its seeds (they may be starting too).
const SEEDS_WAIT: Duration = Duration::from_secs(60);

/// `config` with the member list, groups and replicas filled in from its data directory or a
/// seed, when it joins through seeds; unchanged otherwise.
pub async fn resolve(mut config: Config) -> anyhow::Result<Config> {
    if config.seeds.is_empty() || !config.members.is_empty() {
        return Ok(config);
    }
    if let Some(recorded) = crate::topology::recorded(&config.data_dir)? {
        config.members = recorded.members;
        config.groups = recorded.groups;
        config.replicas = recorded.replicas;
        return Ok(config);
    }
    // A node started alongside the cluster asks again while the seeds start.
    let deadline = tokio::time::Instant::now() + SEEDS_WAIT;
    loop {
        match ask_seeds(&config.seeds).await {
            Ok(shape) => {
                config.members = shape
                    .members
                    .iter()
                    .map(|(id, addr)| format!("{id}={}/{}", addr.client, addr.raft))
                    .collect();
                config.groups = shape.groups as usize;
                config.replicas = shape.replicas;
                return Ok(config);
            }
            Err(failures) if tokio::time::Instant::now() > deadline => {
                bail!("no seed told the cluster's shape: {}", failures.join("; "))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The shape the first seed to answer tells, or why each did not.
async fn ask_seeds(seeds: &[String]) -> Result<ClusterShape, Vec<String>> {
    let mut failures = Vec::new();
    for seed in seeds {
        let asked = tokio::time::timeout(
            SEED_WAIT,
            raft::replica_call::send(seed, ReplicaCall::Shape),
        );
        match asked.await {
            Ok(Ok(ReplicaReply::Shape(shape))) => {
                tracing::info!(
                    %seed,
                    members = shape.members.len(),
                    groups = shape.groups,
                    "learned the cluster's shape"
                );
                return Ok(shape);
            }
            Ok(Ok(other)) => failures.push(format!("{seed}: unexpected answer {other:?}")),
            Ok(Err(error)) => failures.push(format!("{seed}: {error}")),
            Err(_) => failures.push(format!("{seed}: no answer in {}s", SEED_WAIT.as_secs())),
        }
    }
    Err(failures)
}
