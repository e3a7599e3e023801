//! SCAN, HSCAN, SSCAN, ZSCAN.
//!
//! The keyspace is walked by chunks of 16 slots (one hash table each): the cursor is the next
//! chunk to visit, and each call returns whole chunks, so a key present for the whole
//! iteration is returned at least once however the tables resize. Collections are walked from their last element down: removal
//! swaps the last element into the hole, which moves an element only from the visited region
//! into it, never the other way, so nothing present throughout is missed. Small collections
//! (what Redis keeps in compact encodings) come back whole with cursor 0, as in Redis.

use bytes::Bytes;
use resp::double::format_double;
use resp::Frame;

use super::sets::ordered_members;
use super::{global, keyed, CommandDef};
use crate::args::{self, is};
use crate::error::{CommandError, CommandResult};
use crate::exec::Exec;
use crate::glob::glob_match;
use crate::keyspace::CHUNK_COUNT;

pub(crate) static COMMANDS: &[CommandDef] = &[
    global("scan", scan),
    keyed("hscan", hscan),
    keyed("sscan", sscan),
    keyed("zscan", zscan),
];

/// Collections up to this size are returned in one call.
const WHOLE_LEN: usize = 128;

struct ScanOptions {
    count: usize,
    pattern: Option<Bytes>,
    kind: Option<String>,
}

fn parse_cursor(arg: &[u8]) -> Result<u64, CommandError> {
    let invalid = || CommandError::other("ERR invalid cursor");
    let text = std::str::from_utf8(arg).map_err(|_| invalid())?;
    if text.is_empty() || text.as_bytes()[0].is_ascii_whitespace() {
        return Err(invalid());
    }
    // strtoul: an optional sign, and a negative value wraps around.
    let (negative, digits) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let value = digits.parse::<u64>().map_err(|_| invalid())?;
    Ok(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

fn parse_options(
    args: &[Bytes],
    start: usize,
    allow_type: bool,
) -> Result<ScanOptions, CommandError> {
    let mut opts = ScanOptions {
        count: 10,
        pattern: None,
        kind: None,
    };
    let mut i = start;
    while i < args.len() {
        let more = args.len() - i >= 2;
        if is(&args[i], "COUNT") && more {
            let count = args::int(&args[i + 1])?;
            if count < 1 {
                return Err(CommandError::Syntax);
            }
            opts.count = count as usize;
        } else if is(&args[i], "MATCH") && more {
            let pattern = &args[i + 1];
            opts.pattern = (pattern.as_ref() != b"*").then(|| pattern.clone());
        } else if allow_type && is(&args[i], "TYPE") && more {
            opts.kind = Some(String::from_utf8_lossy(&args[i + 1]).to_ascii_lowercase());
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    Ok(opts)
}

fn matches(opts: &ScanOptions, item: &[u8]) -> bool {
    opts.pattern
        .as_ref()
        .is_none_or(|p| glob_match(p, item, false))
}

fn reply(cursor: u64, items: Vec<Frame>) -> Frame {
    Frame::Array(vec![
        Frame::bulk(cursor.to_string().as_bytes()),
        Frame::Array(items),
    ])
}

fn scan(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let cursor = parse_cursor(&args[1])?;
    let opts = parse_options(args, 2, true)?;
    let now = exec.now();
    let mut chunk = cursor as usize;
    let mut visited = 0;
    let mut items = Vec::new();
    while chunk < CHUNK_COUNT && visited < opts.count {
        // A chunk may straddle two slot groups: walk both keyspaces' parts.
        for ks in exec.keyspaces() {
            for entry in ks.chunk_entries(chunk, now) {
                visited += 1;
                let type_ok = opts
                    .kind
                    .as_deref()
                    .is_none_or(|t| t == entry.value.type_name());
                if type_ok && matches(&opts, &entry.key) {
                    items.push(Frame::bulk(&entry.key));
                }
            }
        }
        chunk += 1;
    }
    let next = if chunk >= CHUNK_COUNT {
        0
    } else {
        chunk as u64
    };
    Ok(reply(next, items))
}

/// Walks `len` elements from index `cursor - 1` downwards (cursor 0 starts at the top),
/// returning the indices visited and the next cursor.
fn walk_down(cursor: u64, len: usize, count: usize) -> (Vec<usize>, u64) {
    if len <= WHOLE_LEN {
        return ((0..len).collect(), 0);
    }
    let top = if cursor == 0 || cursor as usize > len {
        len
    } else {
        cursor as usize
    };
    let bottom = top.saturating_sub(count);
    let indices = (bottom..top).rev().collect();
    (indices, bottom as u64)
}

fn hscan(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let cursor = parse_cursor(&args[2])?;
    let Some(hash) = exec.hash(&args[1])? else {
        return Ok(reply(0, Vec::new()));
    };
    let len = hash.len();
    let opts = parse_options(args, 3, false)?;
    let hash = exec.hash(&args[1])?.expect("checked above");
    let (indices, next) = walk_down(cursor, len, opts.count);
    let mut items = Vec::new();
    for i in indices {
        let (field, value) = hash.get_index(i).expect("index below len");
        if matches(&opts, field) {
            items.push(Frame::bulk(field));
            items.push(Frame::bulk(value));
        }
    }
    Ok(reply(next, items))
}

fn sscan(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let cursor = parse_cursor(&args[2])?;
    let Some(set) = exec.set(&args[1])? else {
        return Ok(reply(0, Vec::new()));
    };
    let len = set.len();
    let opts = parse_options(args, 3, false)?;
    let set = exec.set(&args[1])?.expect("checked above");
    let (indices, next) = walk_down(cursor, len, opts.count);
    let members: Vec<&crate::blob::Blob> = if next == 0 && cursor == 0 {
        ordered_members(set.iter(), len)
    } else {
        indices
            .into_iter()
            .map(|i| set.get_index(i).expect("index below len"))
            .collect()
    };
    let items = members
        .into_iter()
        .filter(|m| matches(&opts, m))
        .map(|m| Frame::bulk(m))
        .collect();
    Ok(reply(next, items))
}

fn zscan(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let cursor = parse_cursor(&args[2])?;
    let Some(zset) = exec.zset(&args[1])? else {
        return Ok(reply(0, Vec::new()));
    };
    let len = zset.len();
    let opts = parse_options(args, 3, false)?;
    let zset = exec.zset(&args[1])?.expect("checked above");
    let (indices, next) = walk_down(cursor, len, opts.count);
    let pairs: Vec<(&crate::blob::Blob, f64)> = if len <= WHOLE_LEN {
        zset.iter().collect()
    } else {
        indices
            .into_iter()
            .map(|i| zset.get_index(i).expect("index below len"))
            .collect()
    };
    let mut items = Vec::new();
    for (member, score) in pairs {
        if matches(&opts, member) {
            items.push(Frame::bulk(member));
            items.push(Frame::bulk(format_double(score).as_bytes()));
        }
    }
    Ok(reply(next, items))
}
