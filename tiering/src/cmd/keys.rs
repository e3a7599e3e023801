//! Generic key commands: existence, deletion, renaming, copying and deadlines.

use bytes::Bytes;
use resp::Frame;

use super::{global, keyed, CommandDef};
use crate::args::{self, is};
use crate::error::{CommandError, CommandResult};
use crate::exec::Exec;
use crate::glob::glob_match;

pub(crate) static COMMANDS: &[CommandDef] = &[
    keyed("del", del),
    keyed("unlink", del),
    keyed("exists", exists),
    keyed("touch", exists),
    keyed("type", type_),
    keyed("rename", rename),
    keyed("renamenx", renamenx),
    keyed("copy", copy),
    global("keys", keys),
    global("randomkey", randomkey),
    keyed("expire", expire),
    keyed("pexpire", pexpire),
    keyed("expireat", expireat),
    keyed("pexpireat", pexpireat),
    keyed("ttl", ttl),
    keyed("pttl", pttl),
    keyed("expiretime", expiretime),
    keyed("pexpiretime", pexpiretime),
    keyed("persist", persist),
];

fn del(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let removed = args[1..]
        .iter()
        .filter(|key| exec.remove(key).is_some())
        .count();
    Ok(Frame::Integer(removed as i64))
}

fn exists(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let found = args[1..]
        .iter()
        .filter(|key| exec.lookup(key).is_some())
        .count();
    Ok(Frame::Integer(found as i64))
}

fn type_(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let name = exec.entry(&args[1]).map_or("none", |e| e.value.type_name());
    Ok(Frame::simple(name))
}

fn rename_generic(exec: &mut Exec, args: &[Bytes], nx: bool) -> CommandResult {
    let (from, to) = (&args[1], &args[2]);
    if exec.value_mut(from).is_none() {
        return Err(CommandError::NoSuchKey);
    }
    if from == to {
        return Ok(if nx { Frame::Integer(0) } else { Frame::ok() });
    }
    if nx && exec.value_mut(to).is_some() {
        return Ok(Frame::Integer(0));
    }
    let entry = exec.remove(from).expect("source checked above");
    let expire_at = entry.expire_at().unwrap_or(0);
    exec.remove(to);
    exec.insert(to, entry.value, expire_at);
    Ok(if nx { Frame::Integer(1) } else { Frame::ok() })
}

fn rename(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    rename_generic(exec, args, false)
}

fn renamenx(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    rename_generic(exec, args, true)
}

/// Rejects a database other than 0: AutoCache, like Redis Cluster, has one.
pub(crate) fn check_db_zero(arg: &[u8]) -> Result<(), CommandError> {
    let db = args::int(arg)?;
    if !(0..16).contains(&db) {
        return Err(CommandError::other("ERR DB index is out of range"));
    }
    if db != 0 {
        return Err(CommandError::other(
            "ERR Copying to another database is not allowed in cluster mode",
        ));
    }
    Ok(())
}

fn copy(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let (from, to) = (&args[1], &args[2]);
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if is(&args[i], "REPLACE") {
            replace = true;
        } else if is(&args[i], "DB") && i + 1 < args.len() {
            check_db_zero(&args[i + 1])?;
            i += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    if from == to {
        return Err(CommandError::other(
            "ERR source and destination objects are the same",
        ));
    }
    let Some(entry) = exec.lookup(from) else {
        return Ok(Frame::Integer(0));
    };
    let (value, expire_at) = (entry.value.clone(), entry.expire_at().unwrap_or(0));
    if exec.value_mut(to).is_some() {
        if !replace {
            return Ok(Frame::Integer(0));
        }
        exec.remove(to);
    }
    exec.insert(to, value, expire_at);
    Ok(Frame::Integer(1))
}

fn keys(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let pattern = &args[1];
    let now = exec.now();
    let all = pattern.as_ref() == b"*";
    let found = exec
        .keyspaces()
        .flat_map(|ks| ks.entries(now))
        .filter(|e| all || glob_match(pattern, &e.key, false))
        .map(|e| Frame::bulk(&e.key))
        .collect();
    Ok(Frame::Array(found))
}

fn randomkey(exec: &mut Exec, _args: &[Bytes]) -> CommandResult {
    let now = exec.now();
    let counts: Vec<usize> = exec.keyspaces().map(|ks| ks.len()).collect();
    let total: usize = counts.iter().sum();
    if total == 0 {
        return Ok(Frame::Null);
    }
    use rand::{Rng, SeedableRng};
    let mut pick = exec.rng().random_range(0..total);
    let mut rng = rand::rngs::SmallRng::from_rng(exec.rng());
    for (i, count) in counts.iter().enumerate() {
        if pick < *count {
            let ks = exec
                .keyspaces()
                .nth(i)
                .expect("index from the same iterator");
            if let Some(entry) = ks.random_entry(&mut rng, now) {
                return Ok(Frame::bulk(&entry.key));
            }
            break;
        }
        pick -= count;
    }
    // Only expired keys were drawn: fall back to the first live key, if any.
    Ok(exec
        .keyspaces()
        .find_map(|ks| ks.entries(now).next().map(|e| Frame::bulk(&e.key)))
        .unwrap_or(Frame::Null))
}

#[derive(Default)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn parse_expire_flags(args: &[Bytes]) -> Result<ExpireFlags, CommandError> {
    let mut flags = ExpireFlags::default();
    for opt in &args[3..] {
        if is(opt, "NX") {
            flags.nx = true;
        } else if is(opt, "XX") {
            flags.xx = true;
        } else if is(opt, "GT") {
            flags.gt = true;
        } else if is(opt, "LT") {
            flags.lt = true;
        } else {
            return Err(CommandError::other(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    if flags.nx && (flags.xx || flags.gt || flags.lt) {
        return Err(CommandError::other(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if flags.gt && flags.lt {
        return Err(CommandError::other(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(flags)
}

/// EXPIRE and friends: `base` is added to the argument (now for relative forms, 0 for
/// absolute ones), `seconds` scales it.
fn expire_generic(
    exec: &mut Exec,
    args: &[Bytes],
    command: &str,
    relative: bool,
    seconds: bool,
) -> CommandResult {
    let flags = parse_expire_flags(args)?;
    let invalid = || CommandError::other(format!("ERR invalid expire time in '{command}' command"));
    let mut when = args::int(&args[2])?;
    if seconds {
        when = when.checked_mul(1000).ok_or_else(invalid)?;
    }
    let base = if relative { exec.now() as i64 } else { 0 };
    let when = when.checked_add(base).ok_or_else(invalid)?;
    let key = &args[1];
    if exec.value_mut(key).is_none() {
        return Ok(Frame::Integer(0));
    }
    let current = exec.expire_at(key).map(|at| at as i64);
    let refused = (flags.nx && current.is_some())
        || (flags.xx && current.is_none())
        || (flags.gt && current.is_none_or(|c| when <= c))
        || (flags.lt && current.is_some_and(|c| when >= c));
    if refused {
        return Ok(Frame::Integer(0));
    }
    if when <= exec.now() as i64 {
        exec.remove(key);
    } else {
        exec.set_expire(key, when as u64);
    }
    Ok(Frame::Integer(1))
}

fn expire(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    expire_generic(exec, args, "expire", true, true)
}

fn pexpire(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    expire_generic(exec, args, "pexpire", true, false)
}

fn expireat(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    expire_generic(exec, args, "expireat", false, true)
}

fn pexpireat(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    expire_generic(exec, args, "pexpireat", false, false)
}

/// TTL and friends: -2 for a missing key, -1 without deadline, else `show(deadline, now)`.
fn ttl_generic(exec: &mut Exec, args: &[Bytes], show: fn(u64, u64) -> i64) -> CommandResult {
    let now = exec.now();
    Ok(Frame::Integer(match exec.lookup(&args[1]) {
        None => -2,
        Some(entry) => match entry.expire_at() {
            None => -1,
            Some(at) => show(at, now),
        },
    }))
}

fn ttl(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    ttl_generic(exec, args, |at, now| {
        ((at.saturating_sub(now) + 500) / 1000) as i64
    })
}

fn pttl(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    ttl_generic(exec, args, |at, now| at.saturating_sub(now) as i64)
}

fn expiretime(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    ttl_generic(exec, args, |at, _| (at.saturating_add(500) / 1000) as i64)
}

fn pexpiretime(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    ttl_generic(exec, args, |at, _| at as i64)
}

fn persist(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    if exec.value_mut(key).is_none() || exec.expire_at(key).is_none() {
        return Ok(Frame::Integer(0));
    }
    exec.set_expire(key, 0);
    Ok(Frame::Integer(1))
}
