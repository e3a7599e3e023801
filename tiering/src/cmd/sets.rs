//! Sets.

use bytes::Bytes;
use rand::Rng;
use resp::Frame;

use super::hashes::{random_indices, COMPACT_LEN};
use super::{keyed, CommandDef};
use crate::args;
use crate::blob::Blob;
use crate::error::{CommandError, CommandResult};
use crate::exec::Exec;
use crate::value::{SetValue, Value};

pub(crate) static COMMANDS: &[CommandDef] = &[
    keyed("sadd", sadd),
    keyed("scard", scard),
    keyed("sdiff", sdiff),
    keyed("sdiffstore", sdiffstore),
    keyed("sinter", sinter),
    keyed("sintercard", sintercard),
    keyed("sinterstore", sinterstore),
    keyed("sismember", sismember),
    keyed("smembers", smembers),
    keyed("smismember", smismember),
    keyed("smove", smove),
    keyed("spop", spop),
    keyed("srandmember", srandmember),
    keyed("srem", srem),
    keyed("sunion", sunion),
    keyed("sunionstore", sunionstore),
];

/// Most members of a set Redis keeps as a sorted integer array (`intset`).
const INTSET_MAX: usize = 512;

/// Removes `member`, keeping insertion order for small sets.
pub(crate) fn set_remove(set: &mut SetValue, member: &[u8]) -> bool {
    if set.len() <= COMPACT_LEN {
        set.shift_remove(member)
    } else {
        set.swap_remove(member)
    }
}

/// Members in the order Redis lists them where that order is defined: a small set of integers
/// (Redis's `intset`) is listed in ascending order; other sets in insertion order.
pub(crate) fn ordered_members<'a>(
    members: impl Iterator<Item = &'a Blob>,
    len: usize,
) -> Vec<&'a Blob> {
    let members: Vec<&Blob> = members.collect();
    if len <= INTSET_MAX {
        let ints: Option<Vec<i64>> = members.iter().map(|m| resp::request::parse_ll(m)).collect();
        if let Some(ints) = ints {
            let mut pairs: Vec<(i64, &Blob)> = ints.into_iter().zip(members).collect();
            pairs.sort_by_key(|(n, _)| *n);
            return pairs.into_iter().map(|(_, m)| m).collect();
        }
    }
    members
}

fn set_frame(set: &SetValue) -> Frame {
    Frame::Set(
        ordered_members(set.iter(), set.len())
            .into_iter()
            .map(|m| Frame::bulk(m))
            .collect(),
    )
}

fn sadd(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    if exec.set_mut(key)?.is_none() {
        exec.keyspace_mut(key)
            .insert(key, Value::Set(Box::default()), 0);
    }
    let set = exec.set_mut(key)?.expect("set exists now");
    let added = args[2..]
        .iter()
        .filter(|m| set.insert(Blob::new(m)))
        .count();
    if added > 0 {
        exec.modified(key);
    }
    Ok(Frame::Integer(added as i64))
}

fn srem(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    let Some(set) = exec.set_mut(key)? else {
        return Ok(Frame::Integer(0));
    };
    let removed = args[2..].iter().filter(|m| set_remove(set, m)).count();
    if removed > 0 {
        exec.modified(key);
        exec.remove_if_empty(key);
    }
    Ok(Frame::Integer(removed as i64))
}

fn scard(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(Frame::Integer(
        exec.set(&args[1])?.map_or(0, |s| s.len() as i64),
    ))
}

fn sismember(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(Frame::Integer(
        exec.set(&args[1])?
            .is_some_and(|s| s.contains(&args[2][..])) as i64,
    ))
}

fn smismember(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let set = exec.set(&args[1])?;
    Ok(Frame::Array(
        args[2..]
            .iter()
            .map(|m| Frame::Integer(set.is_some_and(|s| s.contains(&m[..])) as i64))
            .collect(),
    ))
}

fn smembers(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(exec
        .set(&args[1])?
        .map_or(Frame::Set(Vec::new()), set_frame))
}

fn smove(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    if exec.value_mut(src).is_none() {
        return Ok(Frame::Integer(0));
    }
    exec.set_mut(src)?;
    exec.set_mut(dst)?;
    if src == dst {
        let present = exec.set(src)?.is_some_and(|s| s.contains(&member[..]));
        return Ok(Frame::Integer(present as i64));
    }
    let set = exec.set_mut(src)?.expect("source exists");
    if !set_remove(set, member) {
        return Ok(Frame::Integer(0));
    }
    exec.modified(src);
    exec.remove_if_empty(src);
    if exec.set_mut(dst)?.is_none() {
        exec.keyspace_mut(dst)
            .insert(dst, Value::Set(Box::default()), 0);
    }
    exec.set_mut(dst)?
        .expect("destination exists")
        .insert(Blob::new(member));
    exec.modified(dst);
    Ok(Frame::Integer(1))
}

fn spop(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    if args.len() > 3 {
        return Err(CommandError::Syntax);
    }
    let count = match args.get(2) {
        Some(arg) => Some(
            args::non_negative(arg, "ERR value is out of range, must be positive")
                .map_err(|_| CommandError::other("ERR value is out of range, must be positive"))?,
        ),
        None => None,
    };
    let Some(len) = exec.set_mut(key)?.map(|s| s.len()) else {
        return Ok(if count.is_some() {
            Frame::Set(Vec::new())
        } else {
            Frame::Null
        });
    };
    let picks = count.unwrap_or(1).min(len as i64) as usize;
    let popped = exec.with_rng(|exec, rng| {
        let set = exec.set_mut(key).ok().flatten().expect("set checked above");
        (0..picks)
            .map(|_| {
                let index = rng.random_range(0..set.len());
                set.swap_remove_index(index).expect("index below len")
            })
            .collect::<Vec<_>>()
    });
    if picks > 0 {
        exec.modified(key);
        exec.remove_if_empty(key);
    }
    Ok(match count {
        None => Frame::bulk(&popped[0]),
        Some(_) => Frame::Set(popped.iter().map(|m| Frame::bulk(m)).collect()),
    })
}

fn srandmember(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    if args.len() > 3 {
        return Err(CommandError::Syntax);
    }
    let count = match args.get(2) {
        Some(arg) => {
            let n = args::int(arg)?;
            super::hashes::check_picks(n)?;
            Some(n)
        }
        None => None,
    };
    let Some(len) = exec.set(&args[1])?.map(|s| s.len()) else {
        return Ok(if count.is_some() {
            Frame::Array(Vec::new())
        } else {
            Frame::Null
        });
    };
    let Some(count) = count else {
        let index = exec.rng().random_range(0..len);
        let set = exec.set(&args[1])?.expect("checked above");
        return Ok(Frame::bulk(set.get_index(index).expect("index below len")));
    };
    let indices = random_indices(exec.rng(), len, count);
    let set = exec.set(&args[1])?.expect("checked above");
    if count as usize >= len && count > 0 {
        return Ok(Frame::Array(
            ordered_members(set.iter(), len)
                .into_iter()
                .map(|m| Frame::bulk(m))
                .collect(),
        ));
    }
    Ok(Frame::Array(
        indices
            .into_iter()
            .map(|i| Frame::bulk(set.get_index(i).expect("index below len")))
            .collect(),
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

/// Reads the sets at `keys` (a missing key is an empty set), type-checking all of them first.
fn load_sets(exec: &mut Exec, keys: &[Bytes]) -> Result<Vec<Option<SetValue>>, CommandError> {
    let mut sets = Vec::with_capacity(keys.len());
    for key in keys {
        sets.push(exec.set(key)?.cloned());
    }
    Ok(sets)
}

fn compute(op: SetOp, sets: &[Option<SetValue>], limit: usize) -> SetValue {
    let mut result = SetValue::default();
    match op {
        SetOp::Union => {
            for set in sets.iter().flatten() {
                for m in set {
                    result.insert(m.clone());
                }
            }
        }
        SetOp::Inter => {
            if sets.iter().any(|s| s.as_ref().is_none_or(|s| s.is_empty())) {
                return result;
            }
            let mut order: Vec<&SetValue> = sets.iter().flatten().collect();
            order.sort_by_key(|s| s.len());
            for m in order[0] {
                if order[1..].iter().all(|s| s.contains(m)) {
                    result.insert(m.clone());
                    if limit > 0 && result.len() >= limit {
                        break;
                    }
                }
            }
        }
        SetOp::Diff => {
            if let Some(Some(first)) = sets.first() {
                for m in first {
                    if !sets[1..].iter().flatten().any(|s| s.contains(m)) {
                        result.insert(m.clone());
                    }
                }
            }
        }
    }
    result
}

fn set_op(exec: &mut Exec, keys: &[Bytes], op: SetOp) -> CommandResult {
    let sets = load_sets(exec, keys)?;
    Ok(set_frame(&compute(op, &sets, 0)))
}

fn set_op_store(exec: &mut Exec, dst: &[u8], keys: &[Bytes], op: SetOp) -> CommandResult {
    let sets = load_sets(exec, keys)?;
    let result = compute(op, &sets, 0);
    let len = result.len();
    if len == 0 {
        exec.remove(dst);
    } else {
        exec.remove(dst);
        exec.insert(dst, Value::Set(Box::new(result)), 0);
    }
    Ok(Frame::Integer(len as i64))
}

fn sunion(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op(exec, &args[1..], SetOp::Union)
}

fn sinter(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op(exec, &args[1..], SetOp::Inter)
}

fn sdiff(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op(exec, &args[1..], SetOp::Diff)
}

fn sunionstore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op_store(exec, &args[1], &args[2..], SetOp::Union)
}

fn sinterstore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op_store(exec, &args[1], &args[2..], SetOp::Inter)
}

fn sdiffstore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op_store(exec, &args[1], &args[2..], SetOp::Diff)
}

/// Parses `numkeys`: a positive count no larger than the arguments that follow it.
pub(crate) fn numkeys(args: &[Bytes], index: usize) -> Result<usize, CommandError> {
    let error = "ERR numkeys should be greater than 0";
    let n = args::int(&args[index]).map_err(|_| CommandError::other(error))?;
    if n < 1 {
        return Err(CommandError::other(error));
    }
    Ok(n as usize)
}

fn sintercard(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let n = numkeys(args, 1)?;
    if n > args.len() - 2 {
        return Err(CommandError::other(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let mut limit = 0;
    let mut i = 2 + n;
    while i < args.len() {
        if args::is(&args[i], "LIMIT") && i + 1 < args.len() {
            limit = args::int(&args[i + 1])
                .ok()
                .filter(|l| *l >= 0)
                .ok_or_else(|| CommandError::other("ERR LIMIT can't be negative"))?;
            i += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let sets = load_sets(exec, &args[2..2 + n])?;
    Ok(Frame::Integer(
        compute(SetOp::Inter, &sets, limit as usize).len() as i64,
    ))
}
