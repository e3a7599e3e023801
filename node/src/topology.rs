//! The slot map a data directory was created with, recorded in `<data-dir>/topology.toml`.
//!
//! Where a key lives follows from the number of groups, and which node holds which group from
//! the member list and replica count. A node restarted with different values would look for
//! keys in the wrong group, or join groups it never replicated: so the first start records
//! them, with an epoch, and later starts must match. (Changing them on a live cluster is the
//! job of the membership issue, which will bump the epoch.)

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// What the data directory was created with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Topology {
    /// Version of this slot map; 1 for the one a cluster starts with.
    pub epoch: u64,
    pub groups: usize,
    pub node_id: u64,
    /// The member list as given (empty: a node alone).
    pub members: Vec<String>,
    pub replicas: usize,
}

impl Topology {
    fn of(config: &Config) -> Topology {
        let mut members = config.members.clone();
        members.sort();
        Topology {
            epoch: 1,
            groups: config.groups,
            node_id: config.node_id,
            members,
            replicas: if config.members.is_empty() {
                1
            } else {
                config.replicas.min(config.members.len())
            },
        }
    }
}

/// The topology `dir` was created with, if it was.
pub fn recorded(dir: &Path) -> anyhow::Result<Option<Topology>> {
    let path = dir.join("topology.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .with_context(|| format!("invalid {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Records the topology of a new data directory, or checks that `config` matches the one it
/// was created with.
pub fn check_or_record(dir: &Path, config: &Config) -> anyhow::Result<Topology> {
    let path = dir.join("topology.toml");
    let wanted = Topology::of(config);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let recorded: Topology =
                toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
            let same = Topology {
                epoch: recorded.epoch,
                ..wanted.clone()
            };
            if recorded != same {
                bail!(
                    "{} was created with groups = {}, node-id = {}, replicas = {}, members = {:?}; \
                     this start asks for groups = {}, node-id = {}, replicas = {}, members = {:?}. \
                     Start with the recorded values (changing them on existing data is not supported)",
                    dir.display(),
                    recorded.groups,
                    recorded.node_id,
                    recorded.replicas,
                    recorded.members,
                    wanted.groups,
                    wanted.node_id,
                    wanted.replicas,
                    wanted.members
                );
            }
            Ok(recorded)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = toml::to_string(&wanted).context("encode the topology")?;
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
            Ok(wanted)
        }
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_with_other_groups_or_members_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default();
        check_or_record(dir.path(), &config).unwrap();
        check_or_record(dir.path(), &config).unwrap();
        let other = Config {
            groups: 8,
            ..Config::default()
        };
        let err = check_or_record(dir.path(), &other).unwrap_err().to_string();
        assert!(
            err.contains("groups = 16") && err.contains("groups = 8"),
            "{err}"
        );
        let clustered = Config {
            members: vec!["1=127.0.0.1:6379/127.0.0.1:16379".into()],
            ..Config::default()
        };
        assert!(check_or_record(dir.path(), &clustered).is_err());
    }
}
