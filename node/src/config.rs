//! The server's configuration: defaults, an optional TOML file, then command-line flags.
//! Every option is documented in `deploy/autocache.toml`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

/// The server's settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Address to listen on for clients.
    pub bind: IpAddr,
    /// Port to listen on for clients.
    pub port: u16,
    /// Directory of the node's data.
    pub data_dir: PathBuf,
    /// Password of the `default` user; empty means no authentication.
    pub requirepass: String,
    /// Most clients connected at once.
    pub maxclients: usize,
    /// Seconds of inactivity after which a client is disconnected (0: never).
    pub timeout: u64,
    /// Largest bulk argument a client may send, in bytes.
    pub proto_max_bulk_len: usize,
    /// Most unprocessed input buffered per client, in bytes.
    pub client_query_buffer_limit: usize,
    /// Commands slower than this many microseconds are logged to SLOWLOG (-1: none).
    pub slowlog_log_slower_than: i64,
    /// Entries kept in SLOWLOG.
    pub slowlog_max_len: usize,
    /// Times per second the expiry cycle runs.
    pub hz: u32,
    /// Number of slot groups the keyspace is split into (each is one raft group).
    pub groups: usize,
    /// A group snapshots its data, letting it drop older log entries, every this many entries.
    pub snapshot_every: u64,
    /// Worker threads serving clients (0: one per core minus one, at least one).
    pub threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 6379,
            data_dir: PathBuf::from("./data"),
            requirepass: String::new(),
            maxclients: 10000,
            timeout: 0,
            proto_max_bulk_len: 512 * 1024 * 1024,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            slowlog_log_slower_than: 10000,
            slowlog_max_len: 128,
            hz: 10,
            groups: 16,
            snapshot_every: 10000,
            threads: 0,
        }
    }
}

impl Config {
    /// Reads a TOML file; unknown keys and bad values are errors that name the key.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config file {}", path.display()))?;
        let config: Config = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.maxclients == 0 {
            bail!("maxclients must be at least 1");
        }
        if self.proto_max_bulk_len < 1024 * 1024 {
            bail!("proto-max-bulk-len must be at least 1mb (1048576)");
        }
        if self.client_query_buffer_limit < 1024 * 1024 {
            bail!("client-query-buffer-limit must be at least 1mb (1048576)");
        }
        if !(1..=500).contains(&self.hz) {
            bail!("hz must be between 1 and 500");
        }
        if !(1..=16384).contains(&self.groups) {
            bail!("groups must be between 1 and 16384");
        }
        if self.snapshot_every == 0 {
            bail!("snapshot-every must be at least 1");
        }
        if self.requirepass.chars().any(|c| c.is_whitespace()) {
            bail!("requirepass must not contain whitespace");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = toml::from_str::<Config>("prot = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(toml::from_str::<Config>("port = 70000").is_err());
        let config: Config = toml::from_str("hz = 0").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn documented_config_file_parses_to_the_defaults() {
        // Read at run time: a test binary reused from another checkout of the same sources
        // would otherwise look in that checkout.
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let path = Path::new(&dir).join("../deploy/autocache.toml");
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config, Config::default());
    }
}
