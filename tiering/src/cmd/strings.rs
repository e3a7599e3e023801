//! Strings: GET, SET and friends, counters, ranges and LCS.

use bytes::Bytes;
use resp::Frame;

use super::{keyed, CommandDef};
use crate::args::{self, is};
use crate::blob::Blob;
use crate::error::{CommandError, CommandResult};
use crate::exec::Exec;
use crate::value::{StrKind, Value};

pub(crate) static COMMANDS: &[CommandDef] = &[
    keyed("get", get),
    keyed("set", set),
    keyed("setnx", setnx),
    keyed("setex", setex),
    keyed("psetex", psetex),
    keyed("getset", getset),
    keyed("getdel", getdel),
    keyed("getex", getex),
    keyed("mget", mget),
    keyed("mset", mset),
    keyed("msetnx", msetnx),
    keyed("incr", incr),
    keyed("decr", decr),
    keyed("incrby", incrby),
    keyed("decrby", decrby),
    keyed("incrbyfloat", incrbyfloat),
    keyed("append", append),
    keyed("strlen", strlen),
    keyed("getrange", getrange),
    keyed("substr", getrange),
    keyed("setrange", setrange),
    keyed("lcs", lcs),
];

/// The reply for a string value that may be missing.
fn bulk_or_null(value: Option<&Blob>) -> Frame {
    match value {
        Some(v) => Frame::bulk(v),
        None => Frame::Null,
    }
}

/// The error Redis gives when a command would build a string over `proto-max-bulk-len`.
pub(crate) fn check_string_length(
    exec: &Exec,
    size: usize,
    append: usize,
) -> Result<(), CommandError> {
    match size.checked_add(append) {
        Some(total) if total <= exec.max_bulk_len() => Ok(()),
        _ => Err(CommandError::other(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
        )),
    }
}

/// Which expiry option a SET or GETEX carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpireKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// Converts an EX/PX/EXAT/PXAT argument to an absolute deadline, as Redis's
/// `getExpireMillisecondsOrReply`.
fn deadline(exec: &Exec, command: &str, kind: ExpireKind, arg: &[u8]) -> Result<u64, CommandError> {
    let invalid = || CommandError::other(format!("ERR invalid expire time in '{command}' command"));
    let mut ms = args::int(arg)?;
    let seconds = matches!(kind, ExpireKind::Ex | ExpireKind::ExAt);
    if ms <= 0 || (seconds && ms > i64::MAX / 1000) {
        return Err(invalid());
    }
    if seconds {
        ms *= 1000;
    }
    if matches!(kind, ExpireKind::Ex | ExpireKind::Px) {
        ms = ms.checked_add(exec.now() as i64).ok_or_else(invalid)?;
    }
    Ok(ms as u64)
}

fn get(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(bulk_or_null(exec.string(&args[1])?))
}

#[derive(Default)]
struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    expire: Option<(ExpireKind, Bytes)>,
}

fn parse_set_options(args: &[Bytes]) -> Result<SetOptions, CommandError> {
    let mut opts = SetOptions::default();
    let mut i = 3;
    while i < args.len() {
        let opt = &args[i];
        let next = args.get(i + 1);
        let has_expire = opts.expire.is_some();
        let kind = if is(opt, "EX") {
            Some(ExpireKind::Ex)
        } else if is(opt, "PX") {
            Some(ExpireKind::Px)
        } else if is(opt, "EXAT") {
            Some(ExpireKind::ExAt)
        } else if is(opt, "PXAT") {
            Some(ExpireKind::PxAt)
        } else {
            None
        };
        if is(opt, "NX") && !opts.xx {
            opts.nx = true;
        } else if is(opt, "XX") && !opts.nx {
            opts.xx = true;
        } else if is(opt, "GET") {
            opts.get = true;
        } else if is(opt, "KEEPTTL") && !has_expire {
            opts.keep_ttl = true;
        } else if let (Some(kind), Some(value)) = (kind, next) {
            let same_kind = opts.expire.as_ref().is_none_or(|(k, _)| *k == kind);
            if opts.keep_ttl || !same_kind {
                return Err(CommandError::Syntax);
            }
            opts.expire = Some((kind, value.clone()));
            i += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    Ok(opts)
}

/// SET and its older forms. `abort` is the reply when NX/XX prevents the write.
fn set_generic(
    exec: &mut Exec,
    command: &str,
    key: &[u8],
    value: &[u8],
    opts: SetOptions,
    ok: Frame,
    abort: Frame,
) -> CommandResult {
    let deadline = match &opts.expire {
        Some((kind, arg)) => Some(deadline(exec, command, *kind, arg)?),
        None => None,
    };
    let old = if opts.get {
        Some(bulk_or_null(exec.string(key)?))
    } else {
        None
    };
    if opts.nx || opts.xx {
        let found = exec.value_mut(key).is_some();
        if (opts.nx && found) || (opts.xx && !found) {
            return Ok(old.unwrap_or(abort));
        }
    }
    let expire_at = match deadline {
        Some(at) => at,
        None if opts.keep_ttl => exec.expire_at(key).unwrap_or(0),
        None => 0,
    };
    exec.insert(key, Value::string(value), expire_at);
    Ok(old.unwrap_or(ok))
}

fn set(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let opts = parse_set_options(args)?;
    set_generic(
        exec,
        "set",
        &args[1],
        &args[2],
        opts,
        Frame::ok(),
        Frame::Null,
    )
}

fn setnx(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let opts = SetOptions {
        nx: true,
        ..Default::default()
    };
    set_generic(
        exec,
        "setnx",
        &args[1],
        &args[2],
        opts,
        Frame::Integer(1),
        Frame::Integer(0),
    )
}

fn setex(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let opts = SetOptions {
        expire: Some((ExpireKind::Ex, args[2].clone())),
        ..Default::default()
    };
    set_generic(
        exec,
        "setex",
        &args[1],
        &args[3],
        opts,
        Frame::ok(),
        Frame::Null,
    )
}

fn psetex(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let opts = SetOptions {
        expire: Some((ExpireKind::Px, args[2].clone())),
        ..Default::default()
    };
    set_generic(
        exec,
        "psetex",
        &args[1],
        &args[3],
        opts,
        Frame::ok(),
        Frame::Null,
    )
}

fn getset(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let old = bulk_or_null(exec.string(&args[1])?);
    exec.insert(&args[1], Value::string(&args[2]), 0);
    Ok(old)
}

fn getdel(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let old = bulk_or_null(exec.string(&args[1])?);
    if !matches!(old, Frame::Null) {
        exec.remove(&args[1]);
    }
    Ok(old)
}

fn getex(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let mut expire: Option<(ExpireKind, &Bytes)> = None;
    let mut persist = false;
    let mut i = 2;
    while i < args.len() {
        let opt = &args[i];
        let next = args.get(i + 1);
        let kind = [
            ("EX", ExpireKind::Ex),
            ("PX", ExpireKind::Px),
            ("EXAT", ExpireKind::ExAt),
            ("PXAT", ExpireKind::PxAt),
        ]
        .into_iter()
        .find(|(name, _)| is(opt, name))
        .map(|(_, k)| k);
        if is(opt, "PERSIST") && expire.is_none() {
            persist = true;
        } else if let (Some(kind), Some(value), false) = (kind, next, persist) {
            if expire.is_some_and(|(k, _)| k != kind) {
                return Err(CommandError::Syntax);
            }
            expire = Some((kind, value));
            i += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    let key = &args[1];
    let Some(value) = exec.string(key)?.cloned() else {
        return Ok(Frame::Null);
    };
    let deadline = match expire {
        Some((kind, arg)) => Some((kind, deadline(exec, "getex", kind, arg)?)),
        None => None,
    };
    match deadline {
        Some((ExpireKind::ExAt | ExpireKind::PxAt, at)) if at <= exec.now() => {
            exec.remove(key);
        }
        Some((_, at)) => {
            exec.set_expire(key, at);
        }
        None if persist && exec.expire_at(key).is_some() => {
            exec.set_expire(key, 0);
        }
        None => {}
    }
    Ok(Frame::bulk(&value))
}

fn mget(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let replies = args[1..]
        .iter()
        .map(|key| match exec.lookup(key).map(|e| &e.value) {
            Some(Value::Str(v, _)) => Frame::bulk(v),
            _ => Frame::Null,
        })
        .collect();
    Ok(Frame::Array(replies))
}

fn mset_arity(args: &[Bytes], name: &str) -> Result<(), CommandError> {
    if args.len().is_multiple_of(2) {
        return Err(CommandError::Arity(name.to_string()));
    }
    Ok(())
}

fn mset(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    mset_arity(args, "mset")?;
    for pair in args[1..].chunks(2) {
        exec.insert(&pair[0], Value::string(&pair[1]), 0);
    }
    Ok(Frame::ok())
}

fn msetnx(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    mset_arity(args, "msetnx")?;
    if args[1..]
        .chunks(2)
        .any(|pair| exec.value_mut(&pair[0]).is_some())
    {
        return Ok(Frame::Integer(0));
    }
    for pair in args[1..].chunks(2) {
        exec.insert(&pair[0], Value::string(&pair[1]), 0);
    }
    Ok(Frame::Integer(1))
}

/// The string at `key` for a write that replaces it whole (INCR, INCRBYFLOAT): read without
/// marking it changed in place; an expired key is removed.
fn current_for_write(exec: &mut Exec, key: &[u8]) -> Result<Option<Vec<u8>>, CommandError> {
    match exec.value_mut(key) {
        None => Ok(None),
        Some(Value::Str(v, _)) => Ok(Some(v.to_vec())),
        Some(_) => Err(CommandError::WrongType),
    }
}

/// The length of the string at `key` for a write; WRONGTYPE for another type.
fn current_len_for_write(exec: &mut Exec, key: &[u8]) -> Result<Option<usize>, CommandError> {
    match exec.value_mut(key) {
        None => Ok(None),
        Some(Value::Str(v, _)) => Ok(Some(v.len())),
        Some(_) => Err(CommandError::WrongType),
    }
}

fn incr_by(exec: &mut Exec, key: &[u8], by: i64) -> CommandResult {
    let next = match exec.value_mut(key) {
        Some(Value::Str(v, kind)) => {
            let next = args::int(v)?
                .checked_add(by)
                .ok_or(CommandError::Overflow)?;
            // Replaced in place: one lookup, and the deadline stays.
            *v = Blob::new(itoa::Buffer::new().format(next).as_bytes());
            *kind = StrKind::Set;
            exec.modified(key);
            next
        }
        Some(_) => return Err(CommandError::WrongType),
        None => {
            exec.insert(
                key,
                Value::string(itoa::Buffer::new().format(by).as_bytes()),
                0,
            );
            by
        }
    };
    Ok(Frame::Integer(next))
}

fn incr(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    incr_by(exec, &args[1], 1)
}

fn decr(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    incr_by(exec, &args[1], -1)
}

fn incrby(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let by = args::int(&args[2])?;
    incr_by(exec, &args[1], by)
}

fn decrby(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let by = args::int(&args[2])?;
    if by == i64::MIN {
        return Err(CommandError::other("ERR decrement would overflow"));
    }
    incr_by(exec, &args[1], -by)
}

/// Adds two numbers and prints the sum as Redis's INCRBYFLOAT does (x87 long double).
pub(crate) fn add_floats(current: &[u8], increment: &[u8]) -> Result<Vec<u8>, CommandError> {
    crate::long_double::add(current, increment)
}

fn incrbyfloat(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    let current = current_for_write(exec, key)?.unwrap_or_else(|| b"0".to_vec());
    let text = add_floats(&current, &args[2])?;
    let reply = Frame::bulk(&text);
    exec.insert_keep_ttl(key, Value::Str(Blob::from(text), StrKind::Float));
    Ok(reply)
}

fn append(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let (key, suffix) = (&args[1], &args[2]);
    let current_len = current_len_for_write(exec, key)?;
    let len = match current_len {
        Some(len) => {
            check_string_length(exec, len, suffix.len())?;
            let v = exec.string_mut(key)?.expect("key checked above");
            v.extend_from_slice(suffix);
            exec.modified(key);
            len + suffix.len()
        }
        None => {
            exec.insert(key, Value::string(suffix), 0);
            suffix.len()
        }
    };
    Ok(Frame::Integer(len as i64))
}

fn strlen(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(Frame::Integer(
        exec.string(&args[1])?.map_or(0, |v| v.len() as i64),
    ))
}

/// Clamps Redis's inclusive, possibly negative `start..=end` to a byte range of `len`.
pub(crate) fn string_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 { (len + end).max(0) } else { end };
    let end = end.min(len - 1);
    if start > end || len == 0 {
        return None;
    }
    Some((start as usize, end as usize))
}

fn getrange(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let start = args::int(&args[2])?;
    let end = args::int(&args[3])?;
    let Some(value) = exec.string(&args[1])? else {
        return Ok(Frame::bulk(b""));
    };
    Ok(match string_range(start, end, value.len()) {
        Some((s, e)) => Frame::bulk(&value[s..=e]),
        None => Frame::bulk(b""),
    })
}

fn setrange(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let (key, patch) = (&args[1], &args[3]);
    let offset = args::int(&args[2])?;
    if offset < 0 {
        return Err(CommandError::other("ERR offset is out of range"));
    }
    let offset = offset as usize;
    let current_len = current_len_for_write(exec, key)?;
    match current_len {
        None if patch.is_empty() => return Ok(Frame::Integer(0)),
        Some(len) if patch.is_empty() => return Ok(Frame::Integer(len as i64)),
        _ => check_string_length(exec, offset, patch.len())?,
    }
    if current_len.is_none() {
        exec.insert(key, Value::Str(Blob::default(), StrKind::Raw), 0);
    }
    let value = exec.string_mut(key)?.expect("key exists now");
    if value.len() < offset + patch.len() {
        value.resize_zeroed(offset + patch.len());
    }
    value[offset..offset + patch.len()].copy_from_slice(patch);
    let len = value.len();
    exec.modified(key);
    Ok(Frame::Integer(len as i64))
}

fn lcs(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let not_string = || CommandError::other("ERR The specified keys must contain string values");
    let a = match exec.lookup(&args[1]).map(|e| &e.value) {
        None => Vec::new(),
        Some(Value::Str(v, _)) => v.to_vec(),
        Some(_) => return Err(not_string()),
    };
    let b = match exec.lookup(&args[2]).map(|e| &e.value) {
        None => Vec::new(),
        Some(Value::Str(v, _)) => v.to_vec(),
        Some(_) => return Err(not_string()),
    };
    let (mut get_len, mut get_idx, mut with_match_len, mut min_match_len) =
        (false, false, false, 0i64);
    let mut i = 3;
    while i < args.len() {
        let opt = &args[i];
        let more = args.len() - 1 - i;
        if is(opt, "IDX") {
            get_idx = true;
        } else if is(opt, "LEN") {
            get_len = true;
        } else if is(opt, "WITHMATCHLEN") {
            with_match_len = true;
        } else if is(opt, "MINMATCHLEN") && more > 0 {
            min_match_len = args::int(&args[i + 1])?.max(0);
            i += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    if get_idx && get_len {
        return Err(CommandError::other(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen + 1)
        .checked_mul(blen + 1)
        .and_then(|c| c.checked_mul(4));
    if cells.is_none_or(|bytes| bytes > exec.max_bulk_len()) {
        return Err(CommandError::other(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let width = blen + 1;
    let mut table = vec![0u32; (alen + 1) * width];
    for i in 1..=alen {
        for j in 1..=blen {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let total = table[alen * width + blen];
    let compute = get_idx || !get_len;
    let mut result = vec![0u8; total as usize];
    let mut matches = Vec::new();
    let (mut idx, mut i, mut j) = (total as usize, alen, blen);
    // Ranges walk backwards from the ends of both strings, as Redis's lcsCommand emits them.
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (alen, 0usize, 0usize, 0usize);
    while compute && i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[idx - 1] = a[i - 1];
            if a_start == alen {
                a_start = i - 1;
                a_end = i - 1;
                b_start = j - 1;
                b_end = j - 1;
            } else if a_start == i && b_start == j {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != alen {
                emit = true;
            }
        }
        let match_len = a_end.wrapping_sub(a_start).wrapping_add(1);
        if emit {
            if min_match_len == 0 || match_len as i64 >= min_match_len {
                let mut item = vec![
                    Frame::Array(vec![
                        Frame::Integer(a_start as i64),
                        Frame::Integer(a_end as i64),
                    ]),
                    Frame::Array(vec![
                        Frame::Integer(b_start as i64),
                        Frame::Integer(b_end as i64),
                    ]),
                ];
                if with_match_len {
                    item.push(Frame::Integer(match_len as i64));
                }
                matches.push(Frame::Array(item));
            }
            a_start = alen;
        }
    }
    Ok(if get_idx {
        Frame::Map(vec![
            (Frame::bulk_static("matches"), Frame::Array(matches)),
            (Frame::bulk_static("len"), Frame::Integer(total as i64)),
        ])
    } else if get_len {
        Frame::Integer(total as i64)
    } else {
        Frame::Bulk(result.into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_clamp_like_getrange() {
        assert_eq!(string_range(0, -1, 5), Some((0, 4)));
        assert_eq!(string_range(-3, -1, 5), Some((2, 4)));
        assert_eq!(string_range(-1, -3, 5), None);
        assert_eq!(string_range(3, 100, 5), Some((3, 4)));
        assert_eq!(string_range(0, 0, 0), None);
    }
}
