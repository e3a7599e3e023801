//! The command table: what COMMAND reports, what arity checks use and what cluster routing reads.
//!
//! The metadata is Redis 7.0's own, copied from a real redis-server by `commands/generate.py`
//! into `commands/info.resp` and `commands/docs.resp`, so arity, flags and key specifications
//! match Redis byte for byte (cluster clients route with the key specifications). Only supported
//! commands are listed: a command missing here gets Redis's unknown-command error.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

use crate::frame::Frame;
use crate::value;

static INFO_RESP: &[u8] = include_bytes!("../commands/info.resp");
static DOCS_RESP: &[u8] = include_bytes!("../commands/docs.resp");

static TABLE: LazyLock<CommandTable> = LazyLock::new(CommandTable::load);

/// Where the first key of a key specification starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeginSearch {
    /// At a fixed argument index.
    Index(usize),
    /// After the first (or, with a negative start, last) occurrence of a keyword.
    Keyword { keyword: String, start_from: i64 },
    /// Only the command itself knows (SORT's STORE, for example).
    Unknown,
}

/// How many keys follow the start of a key specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FindKeys {
    /// Keys up to `last_key` (relative; negative counts from the end), every `step` arguments.
    Range {
        last_key: i64,
        step: usize,
        limit: i64,
    },
    /// An argument holds the number of keys that follow.
    KeyNum {
        key_num_index: usize,
        first_key: usize,
        step: usize,
    },
    /// Only the command itself knows.
    Unknown,
}

/// One key specification of a command, as `COMMAND INFO` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub flags: Vec<String>,
    pub begin_search: BeginSearch,
    pub find_keys: FindKeys,
}

/// A key found in a request by its command's key specifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPosition {
    /// Index in the request's arguments (0 is the command name).
    pub index: usize,
    /// Index of the key specification that found it (its flags say how the key is used).
    pub spec: usize,
}

/// Why no key positions can be given for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeysError {
    /// The arguments do not make sense for the command's key specifications.
    InvalidArguments,
}

/// Everything AutoCache knows about one command or subcommand.
#[derive(Clone, Debug)]
pub struct CommandSpec {
    /// Dense index of this command or subcommand (`0..CommandTable::spec_count()`), for tables
    /// indexed by command without hashing names.
    pub id: usize,
    /// Lowercase name; subcommands are `container|sub`.
    pub name: String,
    /// Positive: exact argument count; negative: at least that many (command name included).
    pub arity: i64,
    pub flags: Vec<String>,
    pub acl_categories: Vec<String>,
    pub key_specs: Vec<KeySpec>,
    pub subcommands: Vec<CommandSpec>,
    /// The `COMMAND INFO` entry.
    pub info: Frame,
    /// The `COMMAND DOCS` value (the map after the name).
    pub docs: Frame,
    /// The argument index of the only key, for the many commands with exactly one key at a
    /// fixed position (the hot path skips the general key-spec walk).
    single_key: Option<usize>,
}

impl CommandSpec {
    /// Returns true if `flag` (as COMMAND INFO spells it, like `write`) is set.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The index of the command's only key, when it has exactly one at a fixed position and
    /// `argc` arguments include it.
    pub fn single_key_index(&self, argc: usize) -> Option<usize> {
        self.single_key.filter(|&i| i < argc)
    }

    /// Returns true if `argc` arguments (the name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        if self.arity >= 0 {
            argc as i64 == self.arity
        } else {
            argc as i64 >= -self.arity
        }
    }

    /// Returns the subcommand named `sub` (any case).
    pub fn subcommand(&self, sub: &[u8]) -> Option<&CommandSpec> {
        let prefix_len = self.name.len() + 1;
        self.subcommands
            .iter()
            .find(|s| s.name.as_bytes()[prefix_len..].eq_ignore_ascii_case(sub))
    }

    /// Finds the keys of a request with the key specifications, as Redis's
    /// `getKeysUsingKeySpecs` does. Specifications of unknown shape are skipped; commands with
    /// such specifications (SORT) add their own keys.
    pub fn key_positions(&self, args: &[Bytes]) -> Result<Vec<KeyPosition>, KeysError> {
        if self.name == "sort" {
            return Ok(sort_keys(args));
        }
        let argc = args.len();
        let mut keys = Vec::new();
        for (spec_index, spec) in self.key_specs.iter().enumerate() {
            let first = match &spec.begin_search {
                BeginSearch::Index(index) => *index,
                BeginSearch::Keyword {
                    keyword,
                    start_from,
                } => {
                    let (start, end, step): (i64, i64, i64) = if *start_from >= 0 {
                        (*start_from, argc as i64, 1)
                    } else {
                        (argc as i64 + start_from, 0, -1)
                    };
                    let mut found = None;
                    let mut i = start;
                    while (step > 0 && i < end) || (step < 0 && i > end) {
                        if i <= 0 || i as usize >= argc {
                            break;
                        }
                        if args[i as usize].eq_ignore_ascii_case(keyword.as_bytes()) {
                            found = Some(i as usize + 1);
                            break;
                        }
                        i += step;
                    }
                    match found {
                        Some(first) => first,
                        None => continue,
                    }
                }
                BeginSearch::Unknown => continue,
            };
            if first >= argc {
                // A spec whose start lies past the arguments finds no keys (optional keys).
                continue;
            }
            let (last, step) = match &spec.find_keys {
                FindKeys::Range {
                    last_key,
                    step,
                    limit,
                } => {
                    let last = if *last_key >= 0 {
                        first as i64 + last_key
                    } else if *limit <= 1 {
                        argc as i64 + last_key
                    } else {
                        first as i64 + ((argc - first) as i64 / limit + last_key)
                    };
                    (last, *step)
                }
                FindKeys::KeyNum {
                    key_num_index,
                    first_key,
                    step,
                } => {
                    let num_arg = first + key_num_index;
                    let Some(num) = args.get(num_arg).and_then(|a| crate::request::parse_ll(a))
                    else {
                        return Err(KeysError::InvalidArguments);
                    };
                    if num < 0 {
                        return Err(KeysError::InvalidArguments);
                    }
                    let start = first + first_key;
                    let last = start as i64 + (num - 1) * *step as i64;
                    let mut i = start as i64;
                    while i <= last {
                        if i as usize >= argc {
                            return Err(KeysError::InvalidArguments);
                        }
                        keys.push(KeyPosition {
                            index: i as usize,
                            spec: spec_index,
                        });
                        i += *step as i64;
                    }
                    continue;
                }
                FindKeys::Unknown => continue,
            };
            let mut i = first as i64;
            while i <= last {
                if i as usize >= argc || i < 1 {
                    return Err(KeysError::InvalidArguments);
                }
                keys.push(KeyPosition {
                    index: i as usize,
                    spec: spec_index,
                });
                i += step.max(1) as i64;
            }
        }
        Ok(keys)
    }
}

/// SORT's keys, as Redis's `sortGetKeys` finds them: the sorted key and the last STORE
/// destination (its key specifications say "unknown" for the latter).
fn sort_keys(args: &[Bytes]) -> Vec<KeyPosition> {
    let mut keys = vec![KeyPosition { index: 1, spec: 0 }];
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let arg = &args[i];
        let skip = if arg.eq_ignore_ascii_case(b"limit") {
            2
        } else if arg.eq_ignore_ascii_case(b"get") || arg.eq_ignore_ascii_case(b"by") {
            1
        } else {
            if arg.eq_ignore_ascii_case(b"store") && i + 1 < args.len() {
                store = Some(i + 1);
            }
            0
        };
        i += skip + 1;
    }
    if let Some(index) = store {
        keys.push(KeyPosition { index, spec: 2 });
    }
    keys
}

/// All supported commands, by lowercase name.
#[derive(Debug)]
pub struct CommandTable {
    commands: HashMap<Vec<u8>, CommandSpec, foldhash::fast::FixedState>,
    /// Names by `CommandSpec::id`.
    names: Vec<String>,
    /// Names in the order COMMAND lists them.
    order: Vec<String>,
}

impl CommandTable {
    /// The table of supported commands, loaded on first use.
    pub fn get() -> &'static CommandTable {
        &TABLE
    }

    fn load() -> CommandTable {
        let (info, _) = value::parse(INFO_RESP)
            .expect("embedded info.resp is valid resp")
            .expect("embedded info.resp is complete");
        let (docs, _) = value::parse(DOCS_RESP)
            .expect("embedded docs.resp is valid resp")
            .expect("embedded docs.resp is complete");
        let Frame::Array(entries) = info else {
            panic!("info.resp is an array of command entries");
        };
        let Frame::Map(docs) = docs else {
            panic!("docs.resp is a map of command docs");
        };
        let docs: HashMap<String, Frame> = docs
            .into_iter()
            .map(|(name, doc)| (text(&name), doc))
            .collect();
        let mut commands = HashMap::default();
        let mut order = Vec::new();
        let mut names = Vec::new();
        for entry in entries {
            let doc = docs.get(&entry_name(&entry));
            let spec = parse_spec(&entry, doc, &mut names);
            order.push(spec.name.clone());
            commands.insert(spec.name.as_bytes().to_vec(), spec);
        }
        CommandTable {
            commands,
            names,
            order,
        }
    }

    /// Number of commands and subcommands (one past the largest `CommandSpec::id`).
    pub fn spec_count(&self) -> usize {
        self.names.len()
    }

    /// The full name of the command or subcommand with this id.
    pub fn name_of(&self, id: usize) -> &str {
        &self.names[id]
    }

    /// Looks a command up by name, in any case.
    pub fn lookup(&self, name: &[u8]) -> Option<&CommandSpec> {
        let mut lower = [0u8; 32];
        let lower = lower.get_mut(..name.len())?;
        for (dst, src) in lower.iter_mut().zip(name) {
            *dst = src.to_ascii_lowercase();
        }
        self.commands.get(&lower[..])
    }

    /// Looks a request's command up, descending into a container's subcommand.
    /// Returns the container itself when the subcommand is unknown.
    pub fn lookup_request(&self, args: &[Bytes]) -> Option<&CommandSpec> {
        let spec = self.lookup(args.first()?)?;
        if spec.subcommands.is_empty() || args.len() < 2 {
            return Some(spec);
        }
        Some(spec.subcommand(&args[1]).unwrap_or(spec))
    }

    /// Every command, in the order COMMAND lists them.
    pub fn iter(&self) -> impl Iterator<Item = &CommandSpec> {
        self.order
            .iter()
            .map(|name| &self.commands[name.as_bytes()])
    }

    /// Number of top-level commands.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Returns true if there are no commands (never, for the embedded table).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

fn entry_name(entry: &Frame) -> String {
    text(&list(entry)[0])
}

fn text(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(bytes) | Frame::Verbatim(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Frame::Simple(text) => text.to_string(),
        other => panic!("expected a string in the command table, got {other:?}"),
    }
}

fn int(frame: &Frame) -> i64 {
    match frame {
        Frame::Integer(value) => *value,
        other => panic!("expected an integer in the command table, got {other:?}"),
    }
}

fn list(frame: &Frame) -> &[Frame] {
    match frame {
        Frame::Array(items) | Frame::Set(items) => items,
        other => panic!("expected a list in the command table, got {other:?}"),
    }
}

fn field<'a>(map: &'a Frame, name: &str) -> Option<&'a Frame> {
    match map {
        Frame::Map(pairs) => pairs.iter().find(|(k, _)| text(k) == name).map(|(_, v)| v),
        _ => None,
    }
}

fn parse_key_spec(frame: &Frame) -> KeySpec {
    let flags = field(frame, "flags")
        .map(|f| list(f).iter().map(text).collect())
        .unwrap_or_default();
    let begin = field(frame, "begin_search").expect("key spec has begin_search");
    let begin_spec = field(begin, "spec");
    let begin_search = match text(field(begin, "type").expect("begin_search type")).as_str() {
        "index" => BeginSearch::Index(int(
            field(begin_spec.expect("index spec"), "index").expect("index")
        ) as usize),
        "keyword" => {
            let spec = begin_spec.expect("keyword spec");
            BeginSearch::Keyword {
                keyword: text(field(spec, "keyword").expect("keyword")),
                start_from: int(field(spec, "startfrom").expect("startfrom")),
            }
        }
        _ => BeginSearch::Unknown,
    };
    let find = field(frame, "find_keys").expect("key spec has find_keys");
    let find_spec = field(find, "spec");
    let find_keys = match text(field(find, "type").expect("find_keys type")).as_str() {
        "range" => {
            let spec = find_spec.expect("range spec");
            FindKeys::Range {
                last_key: int(field(spec, "lastkey").expect("lastkey")),
                step: int(field(spec, "keystep").expect("keystep")) as usize,
                limit: int(field(spec, "limit").expect("limit")),
            }
        }
        "keynum" => {
            let spec = find_spec.expect("keynum spec");
            FindKeys::KeyNum {
                key_num_index: int(field(spec, "keynumidx").expect("keynumidx")) as usize,
                first_key: int(field(spec, "firstkey").expect("firstkey")) as usize,
                step: int(field(spec, "keystep").expect("keystep")) as usize,
            }
        }
        _ => FindKeys::Unknown,
    };
    KeySpec {
        flags,
        begin_search,
        find_keys,
    }
}

fn parse_spec(entry: &Frame, docs: Option<&Frame>, names: &mut Vec<String>) -> CommandSpec {
    let fields = list(entry);
    let name = text(&fields[0]);
    let id = names.len();
    names.push(name.clone());
    let sub_docs = docs.and_then(|d| field(d, "subcommands"));
    let subcommands = list(&fields[9])
        .iter()
        .map(|sub| {
            let sub_name = entry_name(sub);
            parse_spec(sub, sub_docs.and_then(|d| field(d, &sub_name)), names)
        })
        .collect();
    let key_specs: Vec<KeySpec> = list(&fields[8]).iter().map(parse_key_spec).collect();
    let single_key = match key_specs.as_slice() {
        [KeySpec {
            begin_search: BeginSearch::Index(index),
            find_keys: FindKeys::Range { last_key: 0, .. },
            ..
        }] if name != "sort" => Some(*index),
        _ => None,
    };
    CommandSpec {
        id,
        arity: int(&fields[1]),
        flags: list(&fields[2]).iter().map(text).collect(),
        acl_categories: list(&fields[6]).iter().map(text).collect(),
        key_specs,
        subcommands,
        docs: docs.cloned().unwrap_or(Frame::Map(Vec::new())),
        info: entry.clone(),
        name,
        single_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn keys(words: &[&str]) -> Vec<usize> {
        let a = args(words);
        let spec = CommandTable::get().lookup_request(&a).unwrap();
        spec.key_positions(&a)
            .unwrap()
            .into_iter()
            .map(|k| k.index)
            .collect()
    }

    #[test]
    fn loads_every_supported_command() {
        let table = CommandTable::get();
        assert!(table.len() > 150);
        let get = table.lookup(b"GET").unwrap();
        assert_eq!(get.arity, 2);
        assert!(get.has_flag("readonly"));
        let client = table.lookup(b"client").unwrap();
        assert!(client.subcommand(b"SETINFO").is_some());
        assert!(table.lookup(b"xadd").is_none());
    }

    #[test]
    fn key_positions_follow_key_specs() {
        assert_eq!(keys(&["get", "a"]), [1]);
        assert_eq!(keys(&["mset", "a", "1", "b", "2"]), [1, 3]);
        assert_eq!(keys(&["del", "a", "b", "c"]), [1, 2, 3]);
        assert_eq!(
            keys(&["zunionstore", "d", "2", "a", "b", "weights", "1", "2"]),
            [1, 3, 4]
        );
        assert_eq!(keys(&["blpop", "a", "b", "0"]), [1, 2]);
        assert_eq!(keys(&["lmpop", "2", "a", "b", "left"]), [2, 3]);
        assert_eq!(keys(&["ping"]), Vec::<usize>::new());
    }

    #[test]
    fn ids_are_dense_and_single_keys_known() {
        let table = CommandTable::get();
        let get = table.lookup(b"get").unwrap();
        assert_eq!(table.name_of(get.id), "get");
        assert_eq!(get.single_key_index(2), Some(1));
        assert_eq!(table.lookup(b"mset").unwrap().single_key_index(5), None);
        let config_get = table.lookup(b"config").unwrap().subcommand(b"get").unwrap();
        assert_eq!(table.name_of(config_get.id), "config|get");
        assert!(table.iter().all(|s| s.id < table.spec_count()));
    }

    #[test]
    fn bad_numkeys_is_an_error() {
        let a = args(&["zunionstore", "d", "5", "a"]);
        let spec = CommandTable::get().lookup_request(&a).unwrap();
        assert_eq!(spec.key_positions(&a), Err(KeysError::InvalidArguments));
    }
}
