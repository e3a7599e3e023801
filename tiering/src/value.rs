use std::collections::VecDeque;

use indexmap::{IndexMap, IndexSet};

use crate::blob::Blob;
use crate::zset::SortedSet;

/// The hasher of every collection. Its seed is random per process, which is harmless: the
/// collections keep insertion order (`indexmap`), so nothing a command does depends on hash
/// values, and replicas applying the same commands hold the same order.
pub type Hasher = foldhash::fast::RandomState;

/// A hash: fields to values, in insertion order (removal swaps the last field in).
pub type HashValue = IndexMap<Blob, Blob, Hasher>;

/// A set, in insertion order (removal swaps the last member in).
pub type SetValue = IndexSet<Blob, Hasher>;

/// A list.
pub type ListValue = VecDeque<Blob>;

/// How a string value came to be, which decides the encoding Redis would report for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrKind {
    /// Set whole (SET, MSET, INCR...): `int`, `embstr` or `raw` by its content.
    Set,
    /// Changed in place (APPEND, SETRANGE, SETBIT, BITFIELD, BITOP): `raw`.
    Raw,
    /// Written by INCRBYFLOAT: `embstr` or `raw` by length, never `int`.
    Float,
}

/// A value stored under a key.
///
/// Collections are boxed so a string key, the common case, costs only the 32-byte enum.
#[derive(Clone, Debug)]
pub enum Value {
    Str(Blob, StrKind),
    List(Box<ListValue>),
    Hash(Box<HashValue>),
    Set(Box<SetValue>),
    ZSet(Box<SortedSet>),
}

/// Redis's default thresholds for the compact encodings OBJECT ENCODING reports. AutoCache
/// accepts the `*-max-*` settings but keeps one representation per type; only the reported
/// name follows the thresholds.
const HASH_LISTPACK_MAX_ENTRIES: usize = 512;
const LISTPACK_MAX_ENTRIES: usize = 128;
const LISTPACK_MAX_VALUE: usize = 64;
const INTSET_MAX_ENTRIES: usize = 512;
const EMBSTR_MAX: usize = 44;

impl Value {
    /// A string set whole, as SET stores it.
    pub fn string(bytes: &[u8]) -> Value {
        Value::Str(Blob::new(bytes), StrKind::Set)
    }

    /// The type name TYPE reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(..) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }

    /// The encoding OBJECT ENCODING reports, following Redis 7.0's default thresholds.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s, kind) => match kind {
                StrKind::Raw => "raw",
                StrKind::Set if s.len() <= 20 && resp::request::parse_ll(s).is_some() => "int",
                _ if s.len() <= EMBSTR_MAX => "embstr",
                _ => "raw",
            },
            Value::List(_) => "quicklist",
            Value::Hash(h) => {
                if h.len() <= HASH_LISTPACK_MAX_ENTRIES
                    && h.iter().all(|(f, v)| {
                        f.len() <= LISTPACK_MAX_VALUE && v.len() <= LISTPACK_MAX_VALUE
                    })
                {
                    "listpack"
                } else {
                    "hashtable"
                }
            }
            Value::Set(s) => {
                if s.len() <= INTSET_MAX_ENTRIES
                    && s.iter().all(|m| resp::request::parse_ll(m).is_some())
                {
                    "intset"
                } else {
                    "hashtable"
                }
            }
            Value::ZSet(z) => {
                if z.len() <= LISTPACK_MAX_ENTRIES
                    && z.iter().all(|(m, _)| m.len() <= LISTPACK_MAX_VALUE)
                {
                    "listpack"
                } else {
                    "skiplist"
                }
            }
        }
    }

    /// Number of elements (1 for a string): what eviction and lazy freeing weigh.
    pub fn len(&self) -> usize {
        match self {
            Value::Str(..) => 1,
            Value::List(l) => l.len(),
            Value::Hash(h) => h.len(),
            Value::Set(s) => s.len(),
            Value::ZSet(z) => z.len(),
        }
    }

    /// Returns true for an empty collection, which must never stay in the keyspace.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Str(..) => false,
            _ => self.len() == 0,
        }
    }

    /// An estimate of the bytes this value uses, for MEMORY USAGE.
    pub fn memory_usage(&self) -> usize {
        const BLOB: usize = std::mem::size_of::<Blob>();
        let blob = |b: &Blob| BLOB + b.heap_size();
        match self {
            Value::Str(s, _) => s.heap_size(),
            Value::List(l) => l.capacity() * BLOB + l.iter().map(|b| b.heap_size()).sum::<usize>(),
            Value::Hash(h) => h.iter().map(|(f, v)| blob(f) + blob(v) + 16).sum(),
            Value::Set(s) => s.iter().map(|m| blob(m) + 16).sum(),
            Value::ZSet(z) => z.iter().map(|(m, _)| 2 * blob(m) + 40).sum(),
        }
    }
}
