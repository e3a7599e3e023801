//! Lists, including the blocking pops.

use bytes::Bytes;
use resp::Frame;

use super::sets::numkeys;
use super::{keyed, CommandDef};
use crate::args::{self, is};
use crate::blob::Blob;
use crate::error::{CommandError, CommandResult};
use crate::exec::Exec;
use crate::value::{ListValue, Value};

pub(crate) static COMMANDS: &[CommandDef] = &[
    keyed("blmove", blmove),
    keyed("blmpop", blmpop),
    keyed("blpop", blpop),
    keyed("brpop", brpop),
    keyed("brpoplpush", brpoplpush),
    keyed("lindex", lindex),
    keyed("linsert", linsert),
    keyed("llen", llen),
    keyed("lmove", lmove),
    keyed("lmpop", lmpop),
    keyed("lpop", lpop),
    keyed("lpos", lpos),
    keyed("lpush", lpush),
    keyed("lpushx", lpushx),
    keyed("lrange", lrange),
    keyed("lrem", lrem),
    keyed("lset", lset),
    keyed("ltrim", ltrim),
    keyed("rpop", rpop),
    keyed("rpoplpush", rpoplpush),
    keyed("rpush", rpush),
    keyed("rpushx", rpushx),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Left,
    Right,
}

fn parse_end(arg: &[u8]) -> Result<End, CommandError> {
    if is(arg, "LEFT") {
        Ok(End::Left)
    } else if is(arg, "RIGHT") {
        Ok(End::Right)
    } else {
        Err(CommandError::Syntax)
    }
}

fn pop(list: &mut ListValue, end: End) -> Option<Blob> {
    match end {
        End::Left => list.pop_front(),
        End::Right => list.pop_back(),
    }
}

/// Parses a blocking timeout in seconds (fractions allowed) into a deadline; None blocks
/// forever (timeout 0).
pub(crate) fn deadline(exec: &Exec, arg: &[u8]) -> Result<Option<u64>, CommandError> {
    let text = std::str::from_utf8(arg).ok();
    let seconds: f64 = text
        .filter(|t| !t.is_empty() && !t.as_bytes()[0].is_ascii_whitespace())
        .and_then(|t| t.parse().ok())
        .filter(|v: &f64| !v.is_nan())
        .ok_or_else(|| CommandError::other("ERR timeout is not a float or out of range"))?;
    let ms = (seconds * 1000.0).ceil();
    if ms > i64::MAX as f64 {
        return Err(CommandError::other("ERR timeout is out of range"));
    }
    if ms < 0.0 {
        return Err(CommandError::other("ERR timeout is negative"));
    }
    if ms == 0.0 {
        return Ok(None);
    }
    let ms = ms as u64;
    exec.now()
        .checked_add(ms)
        .filter(|at| *at <= i64::MAX as u64)
        .map(Some)
        .ok_or_else(|| CommandError::other("ERR timeout is out of range"))
}

fn push(exec: &mut Exec, args: &[Bytes], end: End, only_existing: bool) -> CommandResult {
    let key = &args[1];
    if exec.list_mut(key)?.is_none() {
        if only_existing {
            return Ok(Frame::Integer(0));
        }
        exec.keyspace_mut(key)
            .insert(key, Value::List(Box::default()), 0);
    }
    let list = exec.list_mut(key)?.expect("list exists now");
    for element in &args[2..] {
        match end {
            End::Left => list.push_front(Blob::new(element)),
            End::Right => list.push_back(Blob::new(element)),
        }
    }
    let len = list.len();
    exec.modified(key);
    Ok(Frame::Integer(len as i64))
}

fn lpush(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    push(exec, args, End::Left, false)
}

fn rpush(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    push(exec, args, End::Right, false)
}

fn lpushx(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    push(exec, args, End::Left, true)
}

fn rpushx(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    push(exec, args, End::Right, true)
}

/// Pops up to `count` elements from `key` (which must hold a non-empty list).
fn pop_many(exec: &mut Exec, key: &[u8], end: End, count: usize) -> Vec<Frame> {
    let list = exec
        .list_mut(key)
        .ok()
        .flatten()
        .expect("caller checked the list");
    let mut out = Vec::with_capacity(count.min(list.len()));
    for _ in 0..count {
        match pop(list, end) {
            Some(v) => out.push(Frame::bulk(&v)),
            None => break,
        }
    }
    exec.modified(key);
    exec.remove_if_empty(key);
    out
}

fn pop_command(exec: &mut Exec, args: &[Bytes], end: End) -> CommandResult {
    let key = &args[1];
    if args.len() > 3 {
        return Err(CommandError::Arity(
            if end == End::Left { "lpop" } else { "rpop" }.into(),
        ));
    }
    let count =
        match args.get(2) {
            Some(arg) => Some(args::int(arg).ok().filter(|c| *c >= 0).ok_or_else(|| {
                CommandError::other("ERR value is out of range, must be positive")
            })?),
            None => None,
        };
    if exec.list_mut(key)?.is_none() {
        return Ok(if count.is_some() {
            Frame::NullArray
        } else {
            Frame::Null
        });
    }
    Ok(match count {
        Some(0) => Frame::Array(Vec::new()),
        Some(n) => Frame::Array(pop_many(exec, key, end, n as usize)),
        None => pop_many(exec, key, end, 1)
            .pop()
            .expect("a non-empty list pops one"),
    })
}

fn lpop(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    pop_command(exec, args, End::Left)
}

fn rpop(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    pop_command(exec, args, End::Right)
}

fn llen(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(Frame::Integer(
        exec.list(&args[1])?.map_or(0, |l| l.len() as i64),
    ))
}

/// Resolves Redis's inclusive `start..=end` (negative from the end) over `len` elements.
fn list_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 { len + end } else { end };
    if start > end || start >= len {
        return None;
    }
    Some((start as usize, end.min(len - 1) as usize))
}

fn lrange(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let start = args::int(&args[2])?;
    let end = args::int(&args[3])?;
    let Some(list) = exec.list(&args[1])? else {
        return Ok(Frame::Array(Vec::new()));
    };
    Ok(Frame::Array(match list_range(start, end, list.len()) {
        Some((s, e)) => list.range(s..=e).map(|v| Frame::bulk(v)).collect(),
        None => Vec::new(),
    }))
}

fn ltrim(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    let start = args::int(&args[2])?;
    let end = args::int(&args[3])?;
    let Some(list) = exec.list_mut(key)? else {
        return Ok(Frame::ok());
    };
    match list_range(start, end, list.len()) {
        Some((s, e)) => {
            list.truncate(e + 1);
            list.drain(..s);
        }
        None => list.clear(),
    }
    exec.modified(key);
    exec.remove_if_empty(key);
    Ok(Frame::ok())
}

fn lindex(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let index = args::int(&args[2])?;
    let Some(list) = exec.list(&args[1])? else {
        return Ok(Frame::Null);
    };
    let i = if index < 0 {
        list.len() as i64 + index
    } else {
        index
    };
    Ok(match usize::try_from(i).ok().and_then(|i| list.get(i)) {
        Some(v) => Frame::bulk(v),
        None => Frame::Null,
    })
}

fn lset(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    let index = args::int(&args[2])?;
    let Some(list) = exec.list_mut(key)? else {
        return Err(CommandError::NoSuchKey);
    };
    let i = if index < 0 {
        list.len() as i64 + index
    } else {
        index
    };
    let slot = usize::try_from(i)
        .ok()
        .and_then(|i| list.get_mut(i))
        .ok_or(CommandError::IndexOutOfRange)?;
    *slot = Blob::new(&args[3]);
    exec.modified(key);
    Ok(Frame::ok())
}

fn linsert(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    let after = if is(&args[2], "AFTER") {
        true
    } else if is(&args[2], "BEFORE") {
        false
    } else {
        return Err(CommandError::Syntax);
    };
    let Some(list) = exec.list_mut(key)? else {
        return Ok(Frame::Integer(0));
    };
    let Some(pos) = list
        .iter()
        .position(|v| v.as_ref() as &[u8] == args[3].as_ref())
    else {
        return Ok(Frame::Integer(-1));
    };
    list.insert(pos + after as usize, Blob::new(&args[4]));
    let len = list.len();
    exec.modified(key);
    Ok(Frame::Integer(len as i64))
}

fn lrem(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    let count = args::int(&args[2])?;
    let element = &args[3];
    let Some(list) = exec.list_mut(key)? else {
        return Ok(Frame::Integer(0));
    };
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0;
    if count >= 0 {
        let mut i = 0;
        while i < list.len() && removed < limit {
            if list[i].as_ref() as &[u8] == element.as_ref() {
                list.remove(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
    } else {
        let mut i = list.len();
        while i > 0 && removed < limit {
            i -= 1;
            if list[i].as_ref() as &[u8] == element.as_ref() {
                list.remove(i);
                removed += 1;
            }
        }
    }
    if removed > 0 {
        exec.modified(key);
        exec.remove_if_empty(key);
    }
    Ok(Frame::Integer(removed as i64))
}

fn lpos(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None::<i64>, 0i64);
    let mut i = 3;
    while i < args.len() {
        let more = i + 1 < args.len();
        if is(&args[i], "RANK") && more {
            rank = args::int(&args[i + 1])?;
            if rank == 0 {
                return Err(CommandError::other(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
            if rank == i64::MIN {
                return Err(CommandError::other("ERR value is out of range"));
            }
        } else if is(&args[i], "COUNT") && more {
            count = Some(
                args::int(&args[i + 1])
                    .ok()
                    .filter(|c| *c >= 0)
                    .ok_or_else(|| CommandError::other("ERR COUNT can't be negative"))?,
            );
        } else if is(&args[i], "MAXLEN") && more {
            maxlen = args::int(&args[i + 1])
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| CommandError::other("ERR MAXLEN can't be negative"))?;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    let Some(list) = exec.list(&args[1])? else {
        return Ok(if count.is_some() {
            Frame::Array(Vec::new())
        } else {
            Frame::Null
        });
    };
    let element = &args[2];
    let len = list.len();
    let scan: Box<dyn Iterator<Item = usize>> = if rank > 0 {
        Box::new(0..len)
    } else {
        Box::new((0..len).rev())
    };
    let skip = rank.unsigned_abs() - 1;
    let mut matches = 0u64;
    let mut found = Vec::new();
    for (compared, index) in scan.enumerate() {
        if maxlen != 0 && compared as i64 >= maxlen {
            break;
        }
        if list[index].as_ref() as &[u8] == element.as_ref() {
            matches += 1;
            if matches > skip {
                found.push(index);
                match count {
                    None => break,
                    Some(0) => {}
                    Some(c) if found.len() as i64 >= c => break,
                    Some(_) => {}
                }
            }
        }
    }
    Ok(match count {
        Some(_) => Frame::Array(
            found
                .into_iter()
                .map(|i| Frame::Integer(i as i64))
                .collect(),
        ),
        None => found
            .first()
            .map_or(Frame::Null, |i| Frame::Integer(*i as i64)),
    })
}

/// LMOVE's work once the source is known to hold a non-empty list.
fn move_element(exec: &mut Exec, src: &[u8], dst: &[u8], from: End, to: End) -> CommandResult {
    exec.list_mut(dst)?;
    let list = exec.list_mut(src)?.expect("caller checked the source");
    let value = pop(list, from).expect("source list is not empty");
    exec.modified(src);
    exec.remove_if_empty(src);
    if exec.list_mut(dst)?.is_none() {
        exec.keyspace_mut(dst)
            .insert(dst, Value::List(Box::default()), 0);
    }
    let target = exec.list_mut(dst)?.expect("destination exists now");
    match to {
        End::Left => target.push_front(value.clone()),
        End::Right => target.push_back(value.clone()),
    }
    exec.modified(dst);
    Ok(Frame::bulk(&value))
}

fn lmove_generic(exec: &mut Exec, src: &[u8], dst: &[u8], from: End, to: End) -> CommandResult {
    if exec.list_mut(src)?.is_none() {
        return Ok(Frame::Null);
    }
    move_element(exec, src, dst, from, to)
}

fn lmove(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let from = parse_end(&args[3])?;
    let to = parse_end(&args[4])?;
    lmove_generic(exec, &args[1], &args[2], from, to)
}

fn rpoplpush(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    lmove_generic(exec, &args[1], &args[2], End::Right, End::Left)
}

/// BLMOVE and BRPOPLPUSH: move now, or block on the source.
fn blmove_generic(
    exec: &mut Exec,
    args: &[Bytes],
    from: End,
    to: End,
    timeout: &[u8],
) -> CommandResult {
    let deadline = deadline(exec, timeout)?;
    let (src, dst) = (&args[1], &args[2]);
    if exec.list_mut(src)?.is_some() {
        return move_element(exec, src, dst, from, to);
    }
    if exec.in_multi() {
        return Ok(Frame::Null);
    }
    exec.block_on(vec![Blob::new(src)], deadline);
    Ok(Frame::NullArray)
}

fn blmove(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let from = parse_end(&args[3])?;
    let to = parse_end(&args[4])?;
    blmove_generic(exec, args, from, to, &args[5])
}

fn brpoplpush(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    blmove_generic(exec, args, End::Right, End::Left, &args[3])
}

/// Pops from the first non-empty list among `keys`: (key, elements), or None if all are
/// empty. Any key of another type is an error.
fn pop_first(
    exec: &mut Exec,
    keys: &[Bytes],
    end: End,
    count: usize,
) -> Result<Option<(Bytes, Vec<Frame>)>, CommandError> {
    for key in keys {
        if exec.list_mut(key)?.is_some() {
            return Ok(Some((key.clone(), pop_many(exec, key, end, count))));
        }
    }
    Ok(None)
}

fn bpop(exec: &mut Exec, args: &[Bytes], end: End) -> CommandResult {
    let deadline = deadline(exec, &args[args.len() - 1])?;
    let keys = &args[1..args.len() - 1];
    if let Some((key, mut values)) = pop_first(exec, keys, end, 1)? {
        return Ok(Frame::Array(vec![
            Frame::Bulk(key),
            values.pop().expect("one element popped"),
        ]));
    }
    if !exec.in_multi() {
        exec.block_on(keys.iter().map(|k| Blob::new(k)).collect(), deadline);
    }
    Ok(Frame::NullArray)
}

fn blpop(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    bpop(exec, args, End::Left)
}

fn brpop(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    bpop(exec, args, End::Right)
}

/// Parses the `numkeys key... SIDE [COUNT n]` tail of LMPOP/ZMPOP and their blocking forms,
/// starting at `at`: (keys, side, count). `side` parses LEFT/RIGHT or MIN/MAX.
pub(crate) fn parse_mpop<T>(
    args: &[Bytes],
    at: usize,
    side: impl Fn(&[u8]) -> Result<T, CommandError>,
) -> Result<(&[Bytes], T, usize), CommandError> {
    let n = numkeys(args, at)?;
    let where_index = at + n + 1;
    if where_index >= args.len() {
        return Err(CommandError::Syntax);
    }
    let side = side(&args[where_index])?;
    let mut count = None;
    let mut i = where_index + 1;
    while i < args.len() {
        if count.is_none() && is(&args[i], "COUNT") && i + 1 < args.len() {
            let error = "ERR count should be greater than 0";
            let c = args::int(&args[i + 1]).map_err(|_| CommandError::other(error))?;
            if c < 1 {
                return Err(CommandError::other(error));
            }
            count = Some(c as usize);
            i += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok((&args[at + 1..at + 1 + n], side, count.unwrap_or(1)))
}

fn lmpop(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let (keys, end, count) = parse_mpop(args, 1, parse_end)?;
    Ok(match pop_first(exec, keys, end, count)? {
        Some((key, values)) => Frame::Array(vec![Frame::Bulk(key), Frame::Array(values)]),
        None => Frame::NullArray,
    })
}

fn blmpop(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let deadline = deadline(exec, &args[1])?;
    let (keys, end, count) = parse_mpop(args, 2, parse_end)?;
    if let Some((key, values)) = pop_first(exec, keys, end, count)? {
        return Ok(Frame::Array(vec![Frame::Bulk(key), Frame::Array(values)]));
    }
    if !exec.in_multi() {
        exec.block_on(keys.iter().map(|k| Blob::new(k)).collect(), deadline);
    }
    Ok(Frame::NullArray)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_lrange() {
        assert_eq!(list_range(0, -1, 3), Some((0, 2)));
        assert_eq!(list_range(-2, -1, 3), Some((1, 2)));
        assert_eq!(list_range(5, 10, 3), None);
        assert_eq!(list_range(-10, 0, 3), Some((0, 0)));
        assert_eq!(list_range(2, 1, 3), None);
        assert_eq!(list_range(0, -5, 3), None);
    }
}
