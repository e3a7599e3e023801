//! What a node publishes, as chitchat key-value pairs. chitchat sends every update in one UDP
//! datagram, so values stay small: addresses as text, the groups a node leads as one
//! `group:term,...` list, each group's load as `keys,bytes,ops`.

use std::collections::BTreeMap;

const CLIENT: &str = "client";
const RAFT: &str = "raft";
const ADMIN: &str = "admin";
const METRICS: &str = "metrics";
pub(crate) const LEADS: &str = "leads";
const LOAD_PREFIX: &str = "load:";
pub(crate) const SLOT_MAP_EPOCH: &str = "slotmap";

/// A node's identity and addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Never reused in a cluster.
    pub id: u64,
    /// Grows on every restart: the newest generation of a node replaces what was known of the
    /// older ones.
    pub generation: u64,
    /// Where it serves Redis clients (`host:port`).
    pub client: String,
    /// Where its raft transport listens.
    pub raft: String,
    pub admin: Option<String>,
    pub metrics: Option<String>,
}

/// A slot group a node leads, and in which term: of two nodes claiming one group, the higher
/// term is the newer claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaderHint {
    pub group: u32,
    pub term: u64,
}

/// How busy a group's replica on a node is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupLoad {
    pub keys: u64,
    pub bytes: u64,
    pub ops_per_sec: u64,
}

impl NodeInfo {
    /// The key-value pairs a node starts gossiping with.
    pub(crate) fn key_values(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            (CLIENT.to_string(), self.client.clone()),
            (RAFT.to_string(), self.raft.clone()),
        ];
        pairs.extend(self.admin.iter().map(|a| (ADMIN.to_string(), a.clone())));
        pairs.extend(
            self.metrics
                .iter()
                .map(|m| (METRICS.to_string(), m.clone())),
        );
        pairs
    }

    /// Reads a node's facts back; None if it has not published its addresses yet.
    pub(crate) fn from_pairs<'a>(
        id: u64,
        generation: u64,
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<NodeInfo> {
        Some(NodeInfo {
            id,
            generation,
            client: get(CLIENT)?.to_string(),
            raft: get(RAFT)?.to_string(),
            admin: get(ADMIN).map(str::to_string),
            metrics: get(METRICS).map(str::to_string),
        })
    }
}

/// The key and value of the groups a node leads.
pub(crate) fn leads_pair(leads: &[LeaderHint]) -> (String, String) {
    let value = leads
        .iter()
        .map(|hint| format!("{}:{}", hint.group, hint.term))
        .collect::<Vec<_>>()
        .join(",");
    (LEADS.to_string(), value)
}

/// The groups a node leads, from its `leads` value (entries that do not parse are skipped:
/// a hint is advisory).
pub(crate) fn parse_leads(value: Option<&str>) -> Vec<LeaderHint> {
    let mut hints: Vec<LeaderHint> = value
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| {
            let (group, term) = pair.split_once(':')?;
            Some(LeaderHint {
                group: group.parse().ok()?,
                term: term.parse().ok()?,
            })
        })
        .collect();
    hints.sort_unstable();
    hints
}

/// The key and value of one group's load.
pub(crate) fn load_pair(group: u32, load: GroupLoad) -> (String, String) {
    (
        format!("{LOAD_PREFIX}{group}"),
        format!("{},{},{}", load.keys, load.bytes, load.ops_per_sec),
    )
}

/// Every group's load among a node's key-value pairs.
pub(crate) fn parse_loads<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<u32, GroupLoad> {
    pairs
        .filter_map(|(key, value)| {
            let group = key.strip_prefix(LOAD_PREFIX)?.parse().ok()?;
            let mut fields = value.split(',').map(|f| f.parse::<u64>().ok());
            let load = GroupLoad {
                keys: fields.next()??,
                bytes: fields.next()??,
                ops_per_sec: fields.next()??,
            };
            Some((group, load))
        })
        .collect()
}

/// The slot map epoch a node routes by, as published (0 if none).
pub(crate) fn parse_epoch(value: Option<&str>) -> u64 {
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn addresses_read_back_as_published() {
        let info = NodeInfo {
            id: 7,
            generation: 3,
            client: "10.0.0.7:6379".into(),
            raft: "10.0.0.7:7379".into(),
            admin: None,
            metrics: Some("10.0.0.7:9121".into()),
        };
        let pairs: HashMap<String, String> = info.key_values().into_iter().collect();
        let back = NodeInfo::from_pairs(7, 3, |k| pairs.get(k).map(String::as_str));
        assert_eq!(back, Some(info));
        assert_eq!(NodeInfo::from_pairs(7, 3, |_| None), None);
    }

    #[test]
    fn leader_hints_round_trip_and_bad_entries_are_skipped() {
        let hints = [
            LeaderHint { group: 3, term: 9 },
            LeaderHint { group: 0, term: 2 },
        ];
        let (_, value) = leads_pair(&hints);
        assert_eq!(value, "3:9,0:2");
        assert_eq!(
            parse_leads(Some(&value)),
            [hints[1], hints[0]],
            "sorted by group"
        );
        assert_eq!(
            parse_leads(Some("1:2,x:3,4,5:6")),
            [
                LeaderHint { group: 1, term: 2 },
                LeaderHint { group: 5, term: 6 }
            ]
        );
        assert!(parse_leads(Some("")).is_empty() && parse_leads(None).is_empty());
    }

    #[test]
    fn loads_round_trip_and_partial_values_are_skipped() {
        let load = GroupLoad {
            keys: 10,
            bytes: 2048,
            ops_per_sec: 5,
        };
        let (key, value) = load_pair(12, load);
        assert_eq!((key.as_str(), value.as_str()), ("load:12", "10,2048,5"));
        let pairs = [
            (key.as_str(), value.as_str()),
            ("load:3", "1,2"),
            ("client", "x"),
        ];
        assert_eq!(parse_loads(pairs.into_iter()), BTreeMap::from([(12, load)]));
    }
}
