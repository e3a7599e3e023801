//! Hashes.

use bytes::Bytes;
use rand::seq::index::sample;
use rand::Rng;
use resp::Frame;

use super::{keyed, CommandDef};
use crate::args;
use crate::blob::Blob;
use crate::error::{CommandError, CommandResult};
use crate::exec::Exec;
use crate::value::{HashValue, Value};

pub(crate) static COMMANDS: &[CommandDef] = &[
    keyed("hdel", hdel),
    keyed("hexists", hexists),
    keyed("hget", hget),
    keyed("hgetall", hgetall),
    keyed("hincrby", hincrby),
    keyed("hincrbyfloat", hincrbyfloat),
    keyed("hkeys", hkeys),
    keyed("hlen", hlen),
    keyed("hmget", hmget),
    keyed("hmset", hmset),
    keyed("hrandfield", hrandfield),
    keyed("hset", hset),
    keyed("hsetnx", hsetnx),
    keyed("hstrlen", hstrlen),
    keyed("hvals", hvals),
];

/// Collections at or below this size keep their order on removal, as Redis's compact
/// (listpack) encodings do; larger ones swap the last element in (O(1)).
pub(crate) const COMPACT_LEN: usize = 128;

/// Removes `field`, keeping insertion order for small hashes.
pub(crate) fn hash_remove(hash: &mut HashValue, field: &[u8]) -> bool {
    if hash.len() <= COMPACT_LEN {
        hash.shift_remove(field).is_some()
    } else {
        hash.swap_remove(field).is_some()
    }
}

/// The hash at `key` for writing, created empty if missing.
fn hash_for_write<'e>(exec: &'e mut Exec, key: &[u8]) -> Result<&'e mut HashValue, CommandError> {
    if exec.hash_mut(key)?.is_none() {
        exec.keyspace_mut(key)
            .insert(key, Value::Hash(Box::default()), 0);
    }
    Ok(exec.hash_mut(key)?.expect("hash exists now"))
}

fn hset(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    if !args.len().is_multiple_of(2) {
        return Err(CommandError::Arity("hset".into()));
    }
    let key = &args[1];
    let hash = hash_for_write(exec, key)?;
    let mut added = 0;
    for pair in args[2..].chunks(2) {
        if hash
            .insert(Blob::new(&pair[0]), Blob::new(&pair[1]))
            .is_none()
        {
            added += 1;
        }
    }
    exec.modified(key);
    Ok(Frame::Integer(added))
}

fn hmset(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    if !args.len().is_multiple_of(2) {
        return Err(CommandError::Arity("hmset".into()));
    }
    hset(exec, args)?;
    Ok(Frame::ok())
}

fn hsetnx(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    if exec
        .hash_mut(key)?
        .is_some_and(|h| h.contains_key(&args[2][..]))
    {
        return Ok(Frame::Integer(0));
    }
    hash_for_write(exec, key)?.insert(Blob::new(&args[2]), Blob::new(&args[3]));
    exec.modified(key);
    Ok(Frame::Integer(1))
}

fn hget(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(
        match exec.hash(&args[1])?.and_then(|h| h.get(&args[2][..])) {
            Some(v) => Frame::bulk(v),
            None => Frame::Null,
        },
    )
}

fn hmget(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let hash = exec.hash(&args[1])?;
    Ok(Frame::Array(
        args[2..]
            .iter()
            .map(|f| {
                hash.and_then(|h| h.get(&f[..]))
                    .map_or(Frame::Null, |v| Frame::bulk(v))
            })
            .collect(),
    ))
}

fn hdel(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    let Some(hash) = exec.hash_mut(key)? else {
        return Ok(Frame::Integer(0));
    };
    let removed = args[2..].iter().filter(|f| hash_remove(hash, f)).count();
    if removed > 0 {
        exec.modified(key);
        exec.remove_if_empty(key);
    }
    Ok(Frame::Integer(removed as i64))
}

fn hexists(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let found = exec
        .hash(&args[1])?
        .is_some_and(|h| h.contains_key(&args[2][..]));
    Ok(Frame::Integer(found as i64))
}

fn hlen(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(Frame::Integer(
        exec.hash(&args[1])?.map_or(0, |h| h.len() as i64),
    ))
}

fn hstrlen(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let len = exec
        .hash(&args[1])?
        .and_then(|h| h.get(&args[2][..]))
        .map_or(0, |v| v.len());
    Ok(Frame::Integer(len as i64))
}

fn hgetall(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(Frame::Map(
        exec.hash(&args[1])?
            .map(|h| {
                h.iter()
                    .map(|(f, v)| (Frame::bulk(f), Frame::bulk(v)))
                    .collect()
            })
            .unwrap_or_default(),
    ))
}

fn hkeys(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(Frame::Array(
        exec.hash(&args[1])?
            .map(|h| h.keys().map(|f| Frame::bulk(f)).collect())
            .unwrap_or_default(),
    ))
}

fn hvals(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(Frame::Array(
        exec.hash(&args[1])?
            .map(|h| h.values().map(|v| Frame::bulk(v)).collect())
            .unwrap_or_default(),
    ))
}

fn hincrby(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let by = args::int(&args[3])?;
    let key = &args[1];
    let hash = hash_for_write(exec, key)?;
    let current = match hash.get(&args[2][..]) {
        Some(v) => resp::request::parse_ll(v)
            .ok_or_else(|| CommandError::other("ERR hash value is not an integer"))?,
        None => 0,
    };
    let next = current.checked_add(by).ok_or(CommandError::Overflow);
    let next = match next {
        Ok(n) => n,
        Err(e) => {
            exec.remove_if_empty(key);
            return Err(e);
        }
    };
    hash.insert(
        Blob::new(&args[2]),
        Blob::new(itoa::Buffer::new().format(next).as_bytes()),
    );
    exec.modified(key);
    Ok(Frame::Integer(next))
}

fn hincrbyfloat(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let increment = &args[3];
    match crate::long_double::parse(increment) {
        Some(v) if !rustc_apfloat::Float::is_finite(v) => {
            return Err(CommandError::other("ERR value is NaN or Infinity"))
        }
        Some(_) => {}
        None => return Err(CommandError::NotFloat),
    }
    let key = &args[1];
    let current = match exec.hash_mut(key)? {
        Some(h) => h.get(&args[2][..]).map(|v| v.to_vec()),
        None => None,
    };
    if let Some(current) = &current {
        if crate::long_double::parse(current).is_none() {
            return Err(CommandError::other("ERR hash value is not a float"));
        }
    }
    let text = super::strings::add_floats(current.as_deref().unwrap_or(b"0"), increment)?;
    let reply = Frame::bulk(&text);
    hash_for_write(exec, key)?.insert(Blob::new(&args[2]), Blob::from(text));
    exec.modified(key);
    Ok(reply)
}

/// Parses HRANDFIELD/ZRANDMEMBER's count and WITH... flag: (count, with_values).
pub(crate) fn parse_random_count(
    args: &[Bytes],
    flag: &str,
) -> Result<Option<(i64, bool)>, CommandError> {
    if args.len() < 3 {
        return Ok(None);
    }
    let count = args::int(&args[2])?;
    check_picks(count)?;
    if count == i64::MIN {
        return Err(CommandError::other("ERR value is out of range"));
    }
    let with = match args.len() {
        3 => false,
        4 if args::is(&args[3], flag) => {
            if !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
                return Err(CommandError::other("ERR value is out of range"));
            }
            true
        }
        _ => return Err(CommandError::Syntax),
    };
    Ok(Some((count, with)))
}

/// Indices for a random pick of `count` elements out of `len`, as Redis's *RANDFIELD family:
/// a negative count allows repeats; a positive one returns distinct elements (all of them, in
/// order, when it covers the whole collection).
/// Most repeated picks a negative count may ask for (HRANDFIELD, SRANDMEMBER, ZRANDMEMBER).
/// Redis streams any number; AutoCache builds the reply in memory, so it refuses counts whose
/// reply alone would exceed a few hundred megabytes.
pub(crate) const MAX_REPEATED_PICKS: i64 = 1 << 24;

/// Refuses a negative count beyond [`MAX_REPEATED_PICKS`].
pub(crate) fn check_picks(count: i64) -> Result<(), CommandError> {
    if count < -MAX_REPEATED_PICKS {
        return Err(CommandError::other("ERR value is out of range"));
    }
    Ok(())
}

pub(crate) fn random_indices(rng: &mut impl Rng, len: usize, count: i64) -> Vec<usize> {
    if count < 0 {
        return (0..count.unsigned_abs())
            .map(|_| rng.random_range(0..len))
            .collect();
    }
    let count = count as usize;
    if count >= len {
        return (0..len).collect();
    }
    sample(rng, len, count).into_vec()
}

fn hrandfield(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let parsed = parse_random_count(args, "WITHVALUES")?;
    let len = match exec.hash(&args[1])? {
        Some(h) => h.len(),
        None => {
            return Ok(if parsed.is_some() {
                Frame::Array(Vec::new())
            } else {
                Frame::Null
            });
        }
    };
    let Some((count, with_values)) = parsed else {
        let index = exec.rng().random_range(0..len);
        let hash = exec.hash(&args[1])?.expect("checked above");
        let (field, _) = hash.get_index(index).expect("index below len");
        return Ok(Frame::bulk(field));
    };
    if count == 0 {
        return Ok(Frame::Array(Vec::new()));
    }
    let indices = random_indices(exec.rng(), len, count);
    let hash = exec.hash(&args[1])?.expect("checked above");
    let picked = indices
        .into_iter()
        .map(|i| hash.get_index(i).expect("index below len"));
    Ok(if with_values {
        Frame::Pairs(
            picked
                .map(|(f, v)| (Frame::bulk(f), Frame::bulk(v)))
                .collect(),
        )
    } else {
        Frame::Array(picked.map(|(f, _)| Frame::bulk(f)).collect())
    })
}
