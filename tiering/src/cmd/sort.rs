//! SORT and SORT_RO.

use std::cmp::Ordering;

use bytes::Bytes;
use resp::Frame;

use super::{global, CommandDef};
use crate::args::{self, is};
use crate::blob::Blob;
use crate::error::{CommandError, CommandResult};
use crate::exec::Exec;
use crate::value::{ListValue, Value};

pub(crate) static COMMANDS: &[CommandDef] = &[global("sort", sort), global("sort_ro", sort_ro)];

fn sort(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    sort_generic(exec, args, false)
}

fn sort_ro(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    sort_generic(exec, args, true)
}

/// Parses a number as C's `strtod` in SORT: leading spaces allowed, an empty string is 0.
fn strtod(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?.trim_start();
    if text.is_empty() {
        return Some(0.0);
    }
    let value: f64 = text.to_ascii_lowercase().parse().ok()?;
    (!value.is_nan()).then_some(value)
}

/// Resolves a BY or GET pattern for one element: `#` is the element itself, `*` is replaced by
/// it, and `->field` reads a hash field.
fn lookup_pattern(exec: &Exec, pattern: &[u8], element: &[u8]) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(element.to_vec());
    }
    let star = pattern.iter().position(|&b| b == b'*')?;
    let arrow = pattern[star + 1..]
        .windows(2)
        .position(|w| w == b"->")
        .map(|p| p + star + 1)
        .filter(|&p| p + 2 < pattern.len());
    let (key_pattern, field) = match arrow {
        Some(p) => (&pattern[..p], Some(&pattern[p + 2..])),
        None => (pattern, None),
    };
    let mut key = key_pattern[..star].to_vec();
    key.extend_from_slice(element);
    key.extend_from_slice(&key_pattern[star + 1..]);
    match (exec.value(&key), field) {
        (Some(Value::Str(s, _)), None) => Some(s.to_vec()),
        (Some(Value::Hash(h)), Some(field)) => h.get(field).map(|v| v.to_vec()),
        _ => None,
    }
}

struct Item {
    element: Blob,
    score: f64,
    by: Option<Vec<u8>>,
}

fn sort_generic(exec: &mut Exec, args: &[Bytes], readonly: bool) -> CommandResult {
    let (mut desc, mut alpha) = (false, false);
    let (mut limit_start, mut limit_count) = (0i64, -1i64);
    let mut store: Option<&Bytes> = None;
    let mut by: Option<&Bytes> = None;
    let mut dont_sort = false;
    let mut gets: Vec<&Bytes> = Vec::new();
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let opt = &args[j];
        if is(opt, "ASC") {
            desc = false;
        } else if is(opt, "DESC") {
            desc = true;
        } else if is(opt, "ALPHA") {
            alpha = true;
        } else if is(opt, "LIMIT") && left >= 2 {
            limit_start = args::int(&args[j + 1])?;
            limit_count = args::int(&args[j + 2])?;
            j += 2;
        } else if !readonly && is(opt, "STORE") && left >= 1 {
            store = Some(&args[j + 1]);
            j += 1;
        } else if is(opt, "BY") && left >= 1 {
            by = Some(&args[j + 1]);
            dont_sort = !args[j + 1].contains(&b'*');
            j += 1;
        } else if is(opt, "GET") && left >= 1 {
            gets.push(&args[j + 1]);
            j += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    let elements: Vec<Blob> = match exec.lookup(&args[1]).map(|e| &e.value) {
        None => Vec::new(),
        Some(Value::List(l)) => l.iter().cloned().collect(),
        Some(Value::Set(s)) => s.iter().cloned().collect(),
        Some(Value::ZSet(z)) => {
            let mut members: Vec<Blob> = z.iter().map(|(m, _)| m.clone()).collect();
            if dont_sort && desc {
                members.reverse();
            }
            members
        }
        Some(_) => return Err(CommandError::WrongType),
    };
    let is_set = matches!(exec.value(&args[1]), Some(Value::Set(_)));
    if dont_sort && is_set && store.is_some() {
        // A set has no order of its own: sort it so replicas store the same list.
        dont_sort = false;
        alpha = true;
        by = None;
    }
    let len = elements.len() as i64;
    let mut start = limit_start.clamp(0, len);
    let count = limit_count.clamp(-1, len);
    let mut end = if count < 0 { len } else { start + count - 1 };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }
    let mut items: Vec<Item> = elements
        .into_iter()
        .map(|element| Item {
            element,
            score: 0.0,
            by: None,
        })
        .collect();
    if !dont_sort {
        let mut conversion_error = false;
        for item in &mut items {
            let value = match by {
                Some(pattern) => match lookup_pattern(exec, pattern, &item.element) {
                    Some(v) => v,
                    None => continue,
                },
                None => item.element.to_vec(),
            };
            if alpha {
                if by.is_some() {
                    item.by = Some(value);
                }
            } else {
                match strtod(&value) {
                    Some(score) => item.score = score,
                    None => conversion_error = true,
                }
            }
        }
        if conversion_error {
            return Err(CommandError::other(
                "ERR One or more scores can't be converted into double",
            ));
        }
        let by_pattern = by.is_some();
        items.sort_by(|a, b| {
            let ordering = if !alpha {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| a.element.cmp(&b.element))
            } else if by_pattern {
                match (&a.by, &b.by) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (Some(x), Some(y)) => x.cmp(y),
                }
            } else {
                a.element.cmp(&b.element)
            };
            if desc {
                ordering.reverse()
            } else {
                ordering
            }
        });
    }
    let selected: &[Item] = if start <= end && start >= 0 {
        &items[start as usize..=end as usize]
    } else {
        &[]
    };
    let mut output: Vec<Option<Vec<u8>>> = Vec::new();
    for item in selected {
        if gets.is_empty() {
            output.push(Some(item.element.to_vec()));
        }
        for pattern in &gets {
            output.push(lookup_pattern(exec, pattern, &item.element));
        }
    }
    match store {
        None => Ok(Frame::Array(
            output
                .into_iter()
                .map(|v| v.map_or(Frame::Null, |v| Frame::Bulk(v.into())))
                .collect(),
        )),
        Some(dst) => {
            let len = output.len();
            let list: ListValue = output
                .into_iter()
                .map(|v| Blob::from(v.unwrap_or_default()))
                .collect();
            exec.remove(dst);
            if len > 0 {
                exec.insert(dst, Value::List(Box::new(list)), 0);
            }
            Ok(Frame::Integer(len as i64))
        }
    }
}
