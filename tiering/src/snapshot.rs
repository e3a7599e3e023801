//! A keyspace as bytes, for raft snapshots: every key with its deadline and value, collections
//! in their stored order, so a replica restored from a snapshot holds the same order (and makes
//! the same random choices) as the one that wrote it.
//!
//! Format (little endian): `ACS1`, entry count (u64), then per entry: key (u32 length + bytes),
//! deadline (u64, 0 none), type tag (u8) and the value: string = kind (u8) + bytes; list and set =
//! count (u32) + items; hash = count + field/value pairs; sorted set = count + member/score (f64
//! bits) pairs in insertion order.

use thiserror::Error;

use crate::blob::Blob;
use crate::keyspace::{Entry, Keyspace};
use crate::slot::Slot;
use crate::value::{StrKind, Value};
use crate::zset::SortedSet;

const MAGIC: &[u8; 4] = b"ACS1";

/// Why snapshot bytes cannot be loaded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot is truncated or corrupt at byte {0}")]
    Corrupt(usize),
    #[error("snapshot holds key {0:?} outside this keyspace's slots")]
    ForeignKey(String),
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

/// Appends every key of `keyspace` to `out`.
pub fn dump(keyspace: &Keyspace, out: &mut Vec<u8>) {
    dump_entries(keyspace.len(), keyspace.raw_entries(), out);
}

/// Appends `count` entries (the length of `entries`) to `out`, in the same format.
pub fn dump_entries<'a>(count: usize, entries: impl Iterator<Item = &'a Entry>, out: &mut Vec<u8>) {
    dump_header(count, out);
    entries.for_each(|entry| dump_entry(entry, out));
}

/// Appends the start of a dump of `count` entries to `out`: `dump_entry` must then append
/// exactly that many.
pub fn dump_header(count: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(count as u64).to_le_bytes());
}

/// Appends one entry of a dump to `out`.
pub fn dump_entry(entry: &Entry, out: &mut Vec<u8>) {
    put_bytes(out, &entry.key);
    out.extend_from_slice(&entry.expire_at().unwrap_or(0).to_le_bytes());
    match &entry.value {
        Value::Str(s, kind) => {
            out.push(0);
            out.push(match kind {
                StrKind::Set => 0,
                StrKind::Raw => 1,
                StrKind::Float => 2,
            });
            put_bytes(out, s);
        }
        Value::List(list) => {
            out.push(1);
            put_count(out, list.len());
            list.iter().for_each(|item| put_bytes(out, item));
        }
        Value::Hash(hash) => {
            out.push(2);
            put_count(out, hash.len());
            for (field, value) in hash.iter() {
                put_bytes(out, field);
                put_bytes(out, value);
            }
        }
        Value::Set(set) => {
            out.push(3);
            put_count(out, set.len());
            set.iter().for_each(|member| put_bytes(out, member));
        }
        Value::ZSet(zset) => {
            out.push(4);
            put_count(out, zset.len());
            for i in 0..zset.len() {
                let (member, score) = zset.get_index(i).expect("index below len");
                put_bytes(out, member);
                out.extend_from_slice(&score.to_bits().to_le_bytes());
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// How many entries the dump says it holds.
    entries: u64,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(SnapshotError::Corrupt(self.pos))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, SnapshotError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn blob(&mut self) -> Result<Blob, SnapshotError> {
        let len = self.u32()?;
        Ok(Blob::new(self.take(len)?))
    }

    /// A count of items, each at least `min_item` bytes: refuse counts the input cannot hold,
    /// so corrupt input cannot make us allocate without bound.
    fn count(&mut self, min_item: usize) -> Result<usize, SnapshotError> {
        let n = self.u32()?;
        if n.saturating_mul(min_item) > self.bytes.len() - self.pos {
            return Err(SnapshotError::Corrupt(self.pos));
        }
        Ok(n)
    }
}

/// Replaces the contents of `keyspace` with a dump; every key must be of a slot `accept`s.
pub fn load(
    keyspace: &mut Keyspace,
    bytes: &[u8],
    accept: impl Fn(Slot) -> bool,
) -> Result<(), SnapshotError> {
    let mut r = Reader::open(bytes)?;
    keyspace.clear();
    for _ in 0..r.entries {
        let (key, value, expire_at) = r.entry(&accept)?;
        keyspace.insert(&key, value, expire_at);
    }
    r.finish()
}

/// Adds the entries of a dump to `keyspace` (replacing keys it holds); every key must be of a
/// slot `accept`s. Nothing is added unless the whole dump reads. Returns how many were added.
pub fn insert_entries(
    keyspace: &mut Keyspace,
    bytes: &[u8],
    accept: impl Fn(Slot) -> bool,
) -> Result<usize, SnapshotError> {
    let mut r = Reader::open(bytes)?;
    let mut entries = Vec::new();
    for _ in 0..r.entries {
        entries.push(r.entry(&accept)?);
    }
    r.finish()?;
    let added = entries.len();
    for (key, value, expire_at) in entries {
        keyspace.insert(&key, value, expire_at);
    }
    Ok(added)
}

impl Reader<'_> {
    fn open(bytes: &[u8]) -> Result<Reader<'_>, SnapshotError> {
        let mut r = Reader {
            bytes,
            pos: 0,
            entries: 0,
        };
        if r.take(4)? != MAGIC {
            return Err(SnapshotError::Corrupt(0));
        }
        r.entries = r.u64()?;
        Ok(r)
    }

    fn finish(&self) -> Result<(), SnapshotError> {
        if self.pos != self.bytes.len() {
            return Err(SnapshotError::Corrupt(self.pos));
        }
        Ok(())
    }

    /// The next entry: key, value, deadline.
    fn entry(
        &mut self,
        accept: impl Fn(Slot) -> bool,
    ) -> Result<(Blob, Value, u64), SnapshotError> {
        let r = self;
        let key = r.blob()?;
        if !accept(crate::slot::slot_of(&key)) {
            return Err(SnapshotError::ForeignKey(
                String::from_utf8_lossy(&key).into_owned(),
            ));
        }
        let expire_at = r.u64()?;
        let value = match r.u8()? {
            0 => {
                let kind = match r.u8()? {
                    0 => StrKind::Set,
                    1 => StrKind::Raw,
                    2 => StrKind::Float,
                    _ => return Err(SnapshotError::Corrupt(r.pos)),
                };
                Value::Str(r.blob()?, kind)
            }
            1 => {
                let n = r.count(4)?;
                Value::List(Box::new(
                    (0..n).map(|_| r.blob()).collect::<Result<_, _>>()?,
                ))
            }
            2 => {
                let n = r.count(8)?;
                let mut hash = crate::value::HashValue::default();
                for _ in 0..n {
                    let field = r.blob()?;
                    hash.insert(field, r.blob()?);
                }
                Value::Hash(Box::new(hash))
            }
            3 => {
                let n = r.count(4)?;
                let mut set = crate::value::SetValue::default();
                for _ in 0..n {
                    set.insert(r.blob()?);
                }
                Value::Set(Box::new(set))
            }
            4 => {
                let n = r.count(12)?;
                let mut zset = SortedSet::new();
                for _ in 0..n {
                    let member = r.blob()?;
                    let score = f64::from_bits(r.u64()?);
                    zset.insert(&member, score);
                }
                Value::ZSet(Box::new(zset))
            }
            _ => return Err(SnapshotError::Corrupt(r.pos)),
        };
        Ok((key, value, expire_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::SLOT_COUNT;

    fn filled() -> Keyspace {
        let mut ks = Keyspace::new(0..SLOT_COUNT);
        ks.insert(b"s", Value::string(b"hello"), 0);
        ks.insert(b"e", Value::Str(Blob::new(b"12"), StrKind::Raw), 99_000);
        ks.insert(
            b"l",
            Value::List(Box::new([Blob::new(b"a"), Blob::new(b"b")].into())),
            0,
        );
        let mut hash = crate::value::HashValue::default();
        hash.insert(Blob::new(b"f2"), Blob::new(b"2"));
        hash.insert(Blob::new(b"f1"), Blob::new(b"1"));
        ks.insert(b"h", Value::Hash(Box::new(hash)), 0);
        let mut set = crate::value::SetValue::default();
        for m in ["z", "y", "x"] {
            set.insert(Blob::new(m.as_bytes()));
        }
        ks.insert(b"st", Value::Set(Box::new(set)), 0);
        let mut zset = SortedSet::new();
        zset.insert(b"b", 2.0);
        zset.insert(b"a", -1.5);
        ks.insert(b"z", Value::ZSet(Box::new(zset)), 0);
        ks
    }

    fn describe(ks: &Keyspace) -> Vec<String> {
        let mut out: Vec<String> = ks
            .raw_entries()
            .map(|e| {
                format!(
                    "{:?} {:?} {:?} {}",
                    e.key,
                    e.expire_at(),
                    e.value,
                    e.value.encoding()
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn round_trip_keeps_values_deadlines_and_orders() {
        let original = filled();
        let mut bytes = Vec::new();
        dump(&original, &mut bytes);
        let mut restored = Keyspace::new(0..SLOT_COUNT);
        restored.insert(b"stale", Value::string(b"gone"), 0);
        load(&mut restored, &bytes, |_| true).unwrap();
        assert_eq!(describe(&restored), describe(&original));
        assert_eq!(restored.volatile_len(), 1);
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let mut bytes = Vec::new();
        dump(&filled(), &mut bytes);
        for cut in 0..bytes.len() {
            let mut ks = Keyspace::new(0..SLOT_COUNT);
            assert!(
                load(&mut ks, &bytes[..cut], |_| true).is_err(),
                "cut at {cut}"
            );
        }
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&1u64.to_le_bytes());
        huge.extend_from_slice(&1u32.to_le_bytes());
        huge.push(b'l');
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.push(1);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(load(&mut Keyspace::new(0..SLOT_COUNT), &huge, |_| true).is_err());
    }

    #[test]
    fn keys_of_other_slots_are_refused() {
        let mut bytes = Vec::new();
        dump(&filled(), &mut bytes);
        let mut narrow = Keyspace::new(0..10);
        assert!(matches!(
            load(&mut narrow, &bytes, narrow_owns),
            Err(SnapshotError::ForeignKey(_))
        ));
        let mut ks = Keyspace::new(0..SLOT_COUNT);
        ks.insert(b"kept", Value::Str(Blob::new(b"v"), StrKind::Raw), 0);
        assert!(insert_entries(&mut ks, &bytes, narrow_owns).is_err());
        assert_eq!(ks.len(), 1, "nothing added from a refused dump");
    }

    fn narrow_owns(slot: Slot) -> bool {
        slot < 10
    }

    #[test]
    fn entries_are_added_without_clearing() {
        let source = filled();
        let mut bytes = Vec::new();
        let some: Vec<&Entry> = source.raw_entries().take(2).collect();
        dump_entries(some.len(), some.into_iter(), &mut bytes);
        let mut ks = Keyspace::new(0..SLOT_COUNT);
        ks.insert(b"kept", Value::Str(Blob::new(b"v"), StrKind::Raw), 0);
        assert_eq!(insert_entries(&mut ks, &bytes, |_| true), Ok(2));
        assert_eq!(ks.len(), 3);
        assert!(insert_entries(&mut ks, &bytes[..bytes.len() - 1], |_| true).is_err());
    }
}
