//! CONFIG GET, SET, RESETSTAT: real for the options AutoCache has, accepted and remembered for
//! Redis's tuning knobs it does not need (encoding thresholds and the like).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use resp::Frame;
use tiering::glob::glob_match;

use crate::config::Config;
use crate::server::Server;
use crate::session::{Outcome, Session};

/// Applies a new value of an option, or says why it cannot.
type Setter = fn(&Server, &str) -> Result<(), String>;

/// An option AutoCache acts on.
struct Param {
    name: &'static str,
    get: fn(&Config) -> String,
    /// None for options fixed at startup.
    set: Option<Setter>,
}

fn parse_int<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| "argument couldn't be parsed into an integer".to_string())
}

/// Parses a size as Redis's memory options accept it: `100`, `1k`, `1kb`, `5mb`, `1gb`.
pub fn parse_memory(value: &str) -> Result<usize, String> {
    let lower = value.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let multiplier: usize = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err("argument must be a memory value".to_string()),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| "argument must be a memory value".to_string())?;
    n.checked_mul(multiplier)
        .ok_or_else(|| "argument must be a memory value".to_string())
}

fn update(server: &Server, f: impl FnOnce(&mut Config)) -> Result<(), String> {
    let mut next = server.config.read().clone();
    f(&mut next);
    next.validate().map_err(|e| e.to_string())?;
    *server.config.write() = next;
    Ok(())
}

const PARAMS: &[Param] = &[
    Param {
        name: "bind",
        get: |c| c.bind.to_string(),
        set: None,
    },
    Param {
        name: "port",
        get: |c| c.port.to_string(),
        set: None,
    },
    Param {
        name: "dir",
        get: |c| c.data_dir.display().to_string(),
        set: None,
    },
    Param {
        name: "databases",
        get: |_| "1".to_string(),
        set: None,
    },
    Param {
        name: "requirepass",
        get: |c| c.requirepass.clone(),
        set: Some(|s, v| update(s, |c| c.requirepass = v.to_string())),
    },
    Param {
        name: "maxclients",
        get: |c| c.maxclients.to_string(),
        set: Some(|s, v| {
            let n = parse_int(v)?;
            update(s, |c| c.maxclients = n)
        }),
    },
    Param {
        name: "timeout",
        get: |c| c.timeout.to_string(),
        set: Some(|s, v| {
            let n = parse_int(v)?;
            update(s, |c| c.timeout = n)
        }),
    },
    Param {
        name: "proto-max-bulk-len",
        get: |c| c.proto_max_bulk_len.to_string(),
        set: Some(|s, v| {
            let n = parse_memory(v)?;
            update(s, |c| c.proto_max_bulk_len = n)?;
            s.db.config().max_bulk_len.store(n, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "client-query-buffer-limit",
        get: |c| c.client_query_buffer_limit.to_string(),
        set: Some(|s, v| {
            let n = parse_memory(v)?;
            update(s, |c| c.client_query_buffer_limit = n)
        }),
    },
    Param {
        name: "client-output-buffer-limit",
        get: |c| c.client_output_buffer_limit.clone(),
        set: Some(|s, v| {
            let mut limits = s.config.read().output_limits().map_err(|e| e.to_string())?;
            limits.apply(v)?;
            update(s, |c| c.client_output_buffer_limit = limits.render())?;
            s.pubsub.set_limit(limits.pubsub);
            Ok(())
        }),
    },
    Param {
        name: "slowlog-log-slower-than",
        get: |c| c.slowlog_log_slower_than.to_string(),
        set: Some(|s, v| {
            let n = parse_int(v)?;
            update(s, |c| c.slowlog_log_slower_than = n)
        }),
    },
    Param {
        name: "slowlog-max-len",
        get: |c| c.slowlog_max_len.to_string(),
        set: Some(|s, v| {
            let n = parse_int(v)?;
            update(s, |c| c.slowlog_max_len = n)?;
            s.slowlog.trim(n);
            Ok(())
        }),
    },
    Param {
        name: "hz",
        get: |c| c.hz.to_string(),
        set: Some(|s, v| {
            let n = parse_int(v)?;
            update(s, |c| c.hz = n)
        }),
    },
];

/// Redis options accepted and remembered without effect, with Redis 7.0's defaults. Old
/// `ziplist` names are aliases of the `listpack` ones, as in Redis.
const IGNORED: &[(&str, &str)] = &[
    ("activerehashing", "yes"),
    ("appendfsync", "everysec"),
    ("appendonly", "no"),
    ("dbfilename", "dump.rdb"),
    ("hash-max-listpack-entries", "512"),
    ("hash-max-listpack-value", "64"),
    ("lazyfree-lazy-eviction", "no"),
    ("lazyfree-lazy-expire", "no"),
    ("lazyfree-lazy-server-del", "no"),
    ("lazyfree-lazy-user-del", "no"),
    ("lazyfree-lazy-user-flush", "no"),
    ("latency-tracking", "yes"),
    ("lfu-decay-time", "1"),
    ("lfu-log-factor", "10"),
    ("list-compress-depth", "0"),
    ("list-max-listpack-size", "-2"),
    ("loglevel", "notice"),
    ("maxmemory", "0"),
    ("maxmemory-policy", "noeviction"),
    ("maxmemory-samples", "5"),
    ("notify-keyspace-events", ""),
    ("save", ""),
    ("set-max-intset-entries", "512"),
    ("stream-node-max-bytes", "4096"),
    ("stream-node-max-entries", "100"),
    ("tcp-keepalive", "300"),
    ("zset-max-listpack-entries", "128"),
    ("zset-max-listpack-value", "64"),
];

const ALIASES: &[(&str, &str)] = &[
    ("hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("hash-max-ziplist-value", "hash-max-listpack-value"),
    ("list-max-ziplist-size", "list-max-listpack-size"),
    ("zset-max-ziplist-entries", "zset-max-listpack-entries"),
    ("zset-max-ziplist-value", "zset-max-listpack-value"),
];

/// The initial values of the ignored options.
pub fn ignored_defaults() -> BTreeMap<String, String> {
    IGNORED
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, real)| real)
}

pub fn run(session: &mut Session, sub: &str, args: &[Bytes]) -> Outcome {
    let server = session.server.clone();
    match sub {
        "get" => get(&server, &args[2..]),
        "set" => set(&server, &args[2..]),
        "resetstat" => {
            server.stats.reset();
            Frame::ok().into()
        }
        _ => super::help(
            "CONFIG",
            &[
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
            ],
        ),
    }
}

fn get(server: &Server, patterns: &[Bytes]) -> Outcome {
    let config = server.config.read().clone();
    let ignored = server.ignored_config.lock().clone();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for pattern in patterns {
        let lower = String::from_utf8_lossy(pattern).to_ascii_lowercase();
        let pattern = lower.as_bytes();
        let exact = !pattern.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
        for param in PARAMS {
            if glob_match(pattern, param.name.as_bytes(), true) {
                values.insert(param.name.to_string(), (param.get)(&config));
            }
        }
        for (name, value) in &ignored {
            if glob_match(pattern, name.as_bytes(), true) {
                values.insert(name.clone(), value.clone());
            }
        }
        for (alias, real) in ALIASES {
            // Like Redis, an alias shows up only when asked for by its exact name.
            if exact && glob_match(pattern, alias.as_bytes(), true) {
                values.insert(
                    alias.to_string(),
                    ignored.get(*real).cloned().unwrap_or_default(),
                );
            }
        }
    }
    Frame::Map(
        values
            .into_iter()
            .map(|(k, v)| (Frame::bulk(k.as_bytes()), Frame::bulk(v.as_bytes())))
            .collect(),
    )
    .into()
}

fn set(server: &Server, pairs: &[Bytes]) -> Outcome {
    if !pairs.len().is_multiple_of(2) {
        return Frame::error("ERR wrong number of arguments for 'config|set' command").into();
    }
    let mut seen = Vec::new();
    for pair in pairs.chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let name = canonical(&name).to_string();
        let known = PARAMS.iter().any(|p| p.name == name)
            || server.ignored_config.lock().contains_key(&name);
        if !known {
            return Frame::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                String::from_utf8_lossy(&pair[0])
            ))
            .into();
        }
        if seen.contains(&name) {
            return failed(&name, "duplicate parameter");
        }
        seen.push(name);
    }
    for pair in pairs.chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let name = canonical(&name);
        let value = String::from_utf8_lossy(&pair[1]).into_owned();
        match PARAMS.iter().find(|p| p.name == name) {
            Some(Param { set: Some(set), .. }) => {
                if let Err(reason) = set(server, &value) {
                    return failed(name, &reason);
                }
            }
            Some(Param { set: None, .. }) => return failed(name, "can't set immutable config"),
            None => {
                server.ignored_config.lock().insert(name.to_string(), value);
            }
        }
    }
    Frame::ok().into()
}

fn failed(name: &str, reason: &str) -> Outcome {
    Frame::error(format!(
        "ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}"
    ))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("100"), Ok(100));
        assert_eq!(parse_memory("1kb"), Ok(1024));
        assert_eq!(parse_memory("2MB"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_memory("1g"), Ok(1_000_000_000));
        assert!(parse_memory("12x").is_err());
        assert!(parse_memory("").is_err());
    }
}
