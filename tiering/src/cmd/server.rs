//! Whole-keyspace and per-key introspection: DBSIZE, FLUSHDB, FLUSHALL, OBJECT, MEMORY USAGE.

use bytes::Bytes;
use resp::Frame;

use super::{global, keyed, CommandDef};
use crate::args::{self, is};
use crate::error::{CommandError, CommandResult};
use crate::exec::Exec;

pub(crate) static COMMANDS: &[CommandDef] = &[
    global("dbsize", dbsize),
    global("flushdb", flush),
    global("flushall", flush),
    keyed("object|encoding", object_encoding),
    keyed("object|refcount", object_refcount),
    keyed("object|idletime", object_idletime),
    keyed("object|freq", object_freq),
    keyed("object|help", object_help),
    keyed("memory|usage", memory_usage),
    keyed("memory|help", memory_help),
];

fn dbsize(exec: &mut Exec, _args: &[Bytes]) -> CommandResult {
    Ok(Frame::Integer(
        exec.keyspaces().map(|ks| ks.owned_len() as i64).sum(),
    ))
}

fn flush(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    if args.len() > 2 || (args.len() == 2 && !is(&args[1], "ASYNC") && !is(&args[1], "SYNC")) {
        return Err(CommandError::Syntax);
    }
    let removed: usize = exec.keyspaces().map(|ks| ks.len()).sum();
    for ks in exec.keyspaces_mut() {
        ks.clear();
    }
    exec.dirty += removed as u64;
    Ok(Frame::ok())
}

fn object_encoding(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(exec
        .entry(&args[2])
        .map_or(Frame::Null, |e| Frame::bulk_static(e.value.encoding())))
}

fn object_refcount(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(exec
        .entry(&args[2])
        .map_or(Frame::Null, |_| Frame::Integer(1)))
}

/// AutoCache does not track access times (reads never write, not even an LRU clock), so a
/// key always reports as just used.
fn object_idletime(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(exec
        .entry(&args[2])
        .map_or(Frame::Null, |_| Frame::Integer(0)))
}

fn object_freq(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    if exec.entry(&args[2]).is_none() {
        return Ok(Frame::Null);
    }
    Err(CommandError::other(
        "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
    ))
}

fn help(lines: &[&str], container: &str) -> Frame {
    let mut out = vec![Frame::Simple(
        format!("{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:").into(),
    )];
    out.extend(lines.iter().map(|l| Frame::Simple(l.to_string().into())));
    out.push(Frame::simple("HELP"));
    out.push(Frame::simple("    Prints this help."));
    Frame::Array(out)
}

fn object_help(_exec: &mut Exec, _args: &[Bytes]) -> CommandResult {
    Ok(help(
        &[
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
        ],
        "OBJECT",
    ))
}

fn memory_usage(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let mut j = 3;
    while j < args.len() {
        if is(&args[j], "SAMPLES") && j + 1 < args.len() {
            let samples = args::int(&args[j + 1])?;
            if samples < 0 {
                return Err(CommandError::Syntax);
            }
            j += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(match exec.entry(&args[2]) {
        Some(entry) => Frame::Integer(crate::byte_meter::entry_usage(entry) as i64),
        None => Frame::Null,
    })
}

fn memory_help(_exec: &mut Exec, _args: &[Bytes]) -> CommandResult {
    Ok(help(
        &[
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
        ],
        "MEMORY",
    ))
}
