//! The deterministic form of a write: relative deadlines turned absolute.
//!
//! A write's effect is already a function of the keyspace, its arguments and the caller's
//! [`crate::ExecCtx`], so a log that carries the context replays exactly. This module gives
//! the form Redis itself propagates, which a log may prefer to store: `EXPIRE k 10` becomes
//! `PEXPIREAT k <now + 10000>`, `SET k v EX 10` and `SETEX` become `SET ... PXAT`, `GETEX EX`
//! becomes `GETEX PXAT`. The rewritten command gives the same state when applied at any later
//! time. Random choices (SPOP, SRANDMEMBER, ...) need no rewrite: they are drawn from the
//! context's seed over collections whose order is itself deterministic.

use bytes::Bytes;
use resp::command_table::CommandSpec;

use crate::args::is;

/// `now + amount * unit` as a decimal argument, if it is a valid positive deadline.
fn deadline(amount: &[u8], unit: i64, now_ms: u64) -> Option<Bytes> {
    let amount = resp::request::parse_ll(amount)?;
    if amount <= 0 {
        return None;
    }
    let at = amount.checked_mul(unit)?.checked_add(now_ms as i64)?;
    Some(Bytes::from(at.to_string()))
}

/// Rewrites `EX n`/`PX n` options (from index `start`) to `PXAT t`; None if there is nothing to
/// rewrite or an argument is invalid (the command then fails the same way either form).
fn rewrite_options(args: &[Bytes], start: usize, now_ms: u64) -> Option<Vec<Bytes>> {
    let mut out = args[..start].to_vec();
    let mut changed = false;
    let mut i = start;
    while i < args.len() {
        let unit = if is(&args[i], "EX") {
            Some(1000)
        } else if is(&args[i], "PX") {
            Some(1)
        } else {
            None
        };
        match (unit, args.get(i + 1)) {
            (Some(unit), Some(amount)) => {
                out.push(Bytes::from_static(b"PXAT"));
                out.push(deadline(amount, unit, now_ms)?);
                changed = true;
                i += 2;
            }
            _ => {
                out.push(args[i].clone());
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// The absolute-deadline form of a write with a relative deadline, as applied at `now_ms`;
/// None when the command has no relative deadline (or invalid arguments), so it is its own
/// deterministic form.
pub fn absolute_deadlines(spec: &CommandSpec, args: &[Bytes], now_ms: u64) -> Option<Vec<Bytes>> {
    let name = spec.name.as_str();
    match name {
        "expire" | "pexpire" if args.len() >= 3 => {
            let unit = if name == "expire" { 1000 } else { 1 };
            let amount = resp::request::parse_ll(&args[2])?;
            let at = amount.checked_mul(unit)?.checked_add(now_ms as i64)?;
            let mut out = vec![
                Bytes::from_static(b"PEXPIREAT"),
                args[1].clone(),
                Bytes::from(at.to_string()),
            ];
            out.extend_from_slice(&args[3..]);
            Some(out)
        }
        "setex" | "psetex" if args.len() == 4 => {
            let unit = if name == "setex" { 1000 } else { 1 };
            Some(vec![
                Bytes::from_static(b"SET"),
                args[1].clone(),
                args[3].clone(),
                Bytes::from_static(b"PXAT"),
                deadline(&args[2], unit, now_ms)?,
            ])
        }
        "set" if args.len() > 3 => rewrite_options(args, 3, now_ms),
        "getex" if args.len() > 2 => rewrite_options(args, 2, now_ms),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resp::CommandTable;

    fn rewrite(words: &[&str], now: u64) -> Option<Vec<String>> {
        let args: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let spec = CommandTable::get().lookup_request(&args).unwrap();
        absolute_deadlines(spec, &args, now).map(|out| {
            out.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
    }

    #[test]
    fn relative_deadlines_become_absolute() {
        assert_eq!(
            rewrite(&["EXPIRE", "k", "10", "NX"], 1000).unwrap(),
            ["PEXPIREAT", "k", "11000", "NX"]
        );
        assert_eq!(
            rewrite(&["PEXPIRE", "k", "5"], 1000).unwrap(),
            ["PEXPIREAT", "k", "1005"]
        );
        assert_eq!(
            rewrite(&["SETEX", "k", "2", "v"], 1000).unwrap(),
            ["SET", "k", "v", "PXAT", "3000"]
        );
        assert_eq!(
            rewrite(&["SET", "k", "v", "NX", "EX", "1", "GET"], 5).unwrap(),
            ["SET", "k", "v", "NX", "PXAT", "1005", "GET"]
        );
        assert_eq!(
            rewrite(&["GETEX", "k", "PX", "7"], 5).unwrap(),
            ["GETEX", "k", "PXAT", "12"]
        );
    }

    #[test]
    fn absolute_or_invalid_commands_stay_as_they_are() {
        assert_eq!(rewrite(&["SET", "k", "v"], 5), None);
        assert_eq!(rewrite(&["SET", "k", "v", "PXAT", "99"], 5), None);
        assert_eq!(rewrite(&["SETEX", "k", "0", "v"], 5), None);
        assert_eq!(rewrite(&["EXPIRE", "k", "abc"], 5), None);
        assert_eq!(rewrite(&["GET", "k"], 5), None);
    }
}
