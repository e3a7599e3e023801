//! Bitmaps: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD.

use bytes::Bytes;
use resp::Frame;

use super::{keyed, CommandDef};
use crate::args::{self, is};
use crate::blob::Blob;
use crate::error::{CommandError, CommandResult};
use crate::exec::Exec;
use crate::value::{StrKind, Value};

pub(crate) static COMMANDS: &[CommandDef] = &[
    keyed("setbit", setbit),
    keyed("getbit", getbit),
    keyed("bitcount", bitcount),
    keyed("bitpos", bitpos),
    keyed("bitop", bitop),
    keyed("bitfield", bitfield),
    keyed("bitfield_ro", bitfield_ro),
];

const OFFSET_ERROR: &str = "ERR bit offset is not an integer or out of range";

/// Parses a bit offset; with `hash`, `#N` means N times the field width `bits`.
fn bit_offset(exec: &Exec, arg: &[u8], hash: bool, bits: u64) -> Result<u64, CommandError> {
    let error = || CommandError::other(OFFSET_ERROR);
    let (text, scaled) = if hash && arg.len() > 1 && arg[0] == b'#' {
        (&arg[1..], true)
    } else {
        (arg, false)
    };
    let mut offset = resp::request::parse_ll(text).ok_or_else(error)?;
    if scaled {
        offset = offset.checked_mul(bits as i64).ok_or_else(error)?;
    }
    if offset < 0 || (offset as u64 >> 3) >= exec.max_bulk_len() as u64 {
        return Err(error());
    }
    Ok(offset as u64)
}

/// The string at `key` for a bit write, created or zero-extended to hold bit `max_bit`.
fn string_for_bits<'e>(
    exec: &'e mut Exec,
    key: &[u8],
    max_bit: u64,
) -> Result<&'e mut Blob, CommandError> {
    let bytes = (max_bit >> 3) as usize + 1;
    if exec.string_mut(key)?.is_none() {
        exec.keyspace_mut(key)
            .insert(key, Value::Str(Blob::default(), StrKind::Raw), 0);
    }
    let value = exec.string_mut(key)?.expect("string exists now");
    if value.len() < bytes {
        value.resize_zeroed(bytes);
    }
    Ok(value)
}

fn setbit(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let offset = bit_offset(exec, &args[2], false, 0)?;
    let bit_error = || CommandError::other("ERR bit is not an integer or out of range");
    let on = args::int(&args[3]).map_err(|_| bit_error())?;
    if on & !1 != 0 {
        return Err(bit_error());
    }
    let key = &args[1];
    let value = string_for_bits(exec, key, offset)?;
    let byte = (offset >> 3) as usize;
    let bit = 7 - (offset & 7) as u8;
    let old = (value[byte] >> bit) & 1;
    value[byte] = (value[byte] & !(1 << bit)) | ((on as u8) << bit);
    exec.modified(key);
    Ok(Frame::Integer(old as i64))
}

fn getbit(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let offset = bit_offset(exec, &args[2], false, 0)?;
    let Some(value) = exec.string(&args[1])? else {
        return Ok(Frame::Integer(0));
    };
    let byte = (offset >> 3) as usize;
    Ok(Frame::Integer(
        value.get(byte).map_or(0, |b| (b >> (7 - (offset & 7))) & 1) as i64,
    ))
}

/// Resolves BITCOUNT/BITPOS's `start end [BYTE|BIT]` into an inclusive bit range, or None
/// when the range is empty. `end` None means "to the end".
fn bit_range(len: usize, start: i64, end: Option<i64>, in_bits: bool) -> Option<(u64, u64)> {
    let total = if in_bits { len as i64 * 8 } else { len as i64 };
    let mut start = start;
    let mut end = end.unwrap_or(total - 1);
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0).min(total - 1);
    if start > end || total == 0 {
        return None;
    }
    Some(if in_bits {
        (start as u64, end as u64)
    } else {
        (start as u64 * 8, end as u64 * 8 + 7)
    })
}

fn parse_unit(arg: &[u8]) -> Result<bool, CommandError> {
    if is(arg, "BIT") {
        Ok(true)
    } else if is(arg, "BYTE") {
        Ok(false)
    } else {
        Err(CommandError::Syntax)
    }
}

fn bit_at(value: &[u8], bit: u64) -> u8 {
    (value[(bit >> 3) as usize] >> (7 - (bit & 7))) & 1
}

fn bitcount(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let Some(value) = exec.string(&args[1])?.cloned() else {
        return Ok(Frame::Integer(0));
    };
    let range = match args.len() {
        2 => bit_range(value.len(), 0, None, false),
        4 | 5 => {
            let start = args::int(&args[2])?;
            let end = args::int(&args[3])?;
            let in_bits = match args.get(4) {
                Some(unit) => parse_unit(unit)?,
                None => false,
            };
            if start < 0 && end < 0 && start > end {
                return Ok(Frame::Integer(0));
            }
            bit_range(value.len(), start, Some(end), in_bits)
        }
        _ => return Err(CommandError::Syntax),
    };
    let Some((first, last)) = range else {
        return Ok(Frame::Integer(0));
    };
    let mut count = 0u64;
    let mut bit = first;
    while bit <= last {
        if bit & 7 == 0 && bit + 7 <= last {
            count += value[(bit >> 3) as usize].count_ones() as u64;
            bit += 8;
        } else {
            count += bit_at(&value, bit) as u64;
            bit += 1;
        }
    }
    Ok(Frame::Integer(count as i64))
}

fn bitpos(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let wanted = args::int(&args[2])?;
    if wanted != 0 && wanted != 1 {
        return Err(CommandError::other("ERR The bit argument must be 1 or 0."));
    }
    let wanted = wanted as u8;
    let Some(value) = exec.string(&args[1])?.cloned() else {
        return Ok(Frame::Integer(if wanted == 1 { -1 } else { 0 }));
    };
    let (range, end_given) = match args.len() {
        3 => (bit_range(value.len(), 0, None, false), false),
        4..=6 => {
            let start = args::int(&args[3])?;
            let in_bits = match args.get(5) {
                Some(unit) => parse_unit(unit)?,
                None => false,
            };
            let end = match args.get(4) {
                Some(arg) => Some(args::int(arg)?),
                None => None,
            };
            (bit_range(value.len(), start, end, in_bits), end.is_some())
        }
        _ => return Err(CommandError::Syntax),
    };
    let Some((first, last)) = range else {
        return Ok(Frame::Integer(-1));
    };
    if let Some(found) = (first..=last).find(|&bit| bit_at(&value, bit) == wanted) {
        return Ok(Frame::Integer(found as i64));
    }
    // Looking for a clear bit past the string: without an explicit end, the string is taken
    // as padded with zeros, so the answer is the first bit after the range.
    Ok(Frame::Integer(if wanted == 0 && !end_given {
        last as i64 + 1
    } else {
        -1
    }))
}

fn bitop(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let op = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    if !matches!(op.as_str(), "and" | "or" | "xor" | "not") {
        return Err(CommandError::Syntax);
    }
    if op == "not" && args.len() != 4 {
        return Err(CommandError::other(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    let mut sources: Vec<Vec<u8>> = Vec::with_capacity(args.len() - 3);
    for key in &args[3..] {
        sources.push(exec.string(key)?.map(|v| v.to_vec()).unwrap_or_default());
    }
    let max_len = sources.iter().map(|s| s.len()).max().unwrap_or(0);
    let byte_at = |s: &Vec<u8>, i: usize| s.get(i).copied().unwrap_or(0);
    let result: Vec<u8> = (0..max_len)
        .map(|i| {
            let mut out = byte_at(&sources[0], i);
            if op == "not" {
                return !out;
            }
            for source in &sources[1..] {
                let b = byte_at(source, i);
                match op.as_str() {
                    "and" => out &= b,
                    "or" => out |= b,
                    _ => out ^= b,
                }
            }
            out
        })
        .collect();
    let dst = &args[2];
    exec.remove(dst);
    if max_len > 0 {
        exec.insert(dst, Value::Str(Blob::from(result), StrKind::Raw), 0);
    }
    Ok(Frame::Integer(max_len as i64))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy)]
enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

struct Field {
    op: FieldOp,
    signed: bool,
    bits: u64,
    offset: u64,
    overflow: Overflow,
}

fn field_type(arg: &[u8]) -> Result<(bool, u64), CommandError> {
    let error = || {
        CommandError::other(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
        )
    };
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(error()),
    };
    let bits = resp::request::parse_ll(&arg[1..]).ok_or_else(error)?;
    if bits < 1 || (signed && bits > 64) || (!signed && bits > 63) {
        return Err(error());
    }
    Ok((signed, bits as u64))
}

fn get_unsigned(p: &[u8], mut offset: u64, bits: u64) -> u64 {
    let mut value = 0u64;
    for _ in 0..bits {
        let byte = p.get((offset >> 3) as usize).copied().unwrap_or(0);
        value = (value << 1) | ((byte >> (7 - (offset & 7))) & 1) as u64;
        offset += 1;
    }
    value
}

fn get_signed(p: &[u8], offset: u64, bits: u64) -> i64 {
    let mut value = get_unsigned(p, offset, bits) as i64;
    if bits < 64 && value & (1i64 << (bits - 1)) != 0 {
        value |= -1i64 << bits;
    }
    value
}

fn set_bits(p: &mut [u8], mut offset: u64, bits: u64, value: u64) {
    for j in 0..bits {
        let bit = (value >> (bits - 1 - j)) & 1;
        let byte = (offset >> 3) as usize;
        let shift = 7 - (offset & 7);
        p[byte] = (p[byte] & !(1 << shift)) | ((bit as u8) << shift);
        offset += 1;
    }
}

/// Redis's `checkUnsignedBitfieldOverflow`: Some(new value) on overflow (wrapped or
/// saturated), with the overflow flag.
fn unsigned_overflow(value: u64, incr: i64, bits: u64, overflow: Overflow) -> (bool, u64) {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = (value as i64).wrapping_neg();
    let wrap = || value.wrapping_add(incr as u64) & max;
    if value > max || (incr > 0 && incr > max_incr) {
        return (
            true,
            match overflow {
                Overflow::Wrap => wrap(),
                Overflow::Sat => max,
                Overflow::Fail => 0,
            },
        );
    }
    if incr < 0 && incr < min_incr {
        return (
            true,
            match overflow {
                Overflow::Wrap => wrap(),
                Overflow::Sat => 0,
                Overflow::Fail => 0,
            },
        );
    }
    (false, 0)
}

/// Redis's `checkSignedBitfieldOverflow`.
fn signed_overflow(value: i64, incr: i64, bits: u64, overflow: Overflow) -> (bool, i64) {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr)
    {
        return (
            true,
            match overflow {
                Overflow::Wrap => wrap(),
                Overflow::Sat => max,
                Overflow::Fail => 0,
            },
        );
    }
    if value < min || (bits != 64 && incr < min_incr) || (value < 0 && incr < 0 && incr < min_incr)
    {
        return (
            true,
            match overflow {
                Overflow::Wrap => wrap(),
                Overflow::Sat => min,
                Overflow::Fail => 0,
            },
        );
    }
    (false, 0)
}

fn bitfield_generic(exec: &mut Exec, args: &[Bytes], readonly_command: bool) -> CommandResult {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < args.len() {
        let remaining = args.len() - j - 1;
        let sub = &args[j];
        let op = if is(sub, "GET") && remaining >= 2 {
            FieldOp::Get
        } else if is(sub, "SET") && remaining >= 3 {
            FieldOp::Set(0)
        } else if is(sub, "INCRBY") && remaining >= 3 {
            FieldOp::IncrBy(0)
        } else if is(sub, "OVERFLOW") && remaining >= 1 {
            overflow = if is(&args[j + 1], "WRAP") {
                Overflow::Wrap
            } else if is(&args[j + 1], "SAT") {
                Overflow::Sat
            } else if is(&args[j + 1], "FAIL") {
                Overflow::Fail
            } else {
                return Err(CommandError::other("ERR Invalid OVERFLOW type specified"));
            };
            j += 2;
            continue;
        } else {
            return Err(CommandError::Syntax);
        };
        let (signed, bits) = field_type(&args[j + 1])?;
        let offset = bit_offset(exec, &args[j + 2], true, bits)?;
        let op = match op {
            FieldOp::Get => FieldOp::Get,
            FieldOp::Set(_) => FieldOp::Set(args::int(&args[j + 3])?),
            FieldOp::IncrBy(_) => FieldOp::IncrBy(args::int(&args[j + 3])?),
        };
        fields.push(Field {
            op,
            signed,
            bits,
            offset,
            overflow,
        });
        j += if matches!(op, FieldOp::Get) { 3 } else { 4 };
    }
    let key = &args[1];
    let highest_write = fields
        .iter()
        .filter(|f| !matches!(f.op, FieldOp::Get))
        .map(|f| f.offset + f.bits - 1)
        .max();
    let mut changed = false;
    let mut replies = Vec::with_capacity(fields.len());
    match highest_write {
        None => {
            let value = exec.string(key)?.map(|v| v.to_vec()).unwrap_or_default();
            for f in &fields {
                replies.push(Frame::Integer(if f.signed {
                    get_signed(&value, f.offset, f.bits)
                } else {
                    get_unsigned(&value, f.offset, f.bits) as i64
                }));
            }
        }
        Some(_) if readonly_command => {
            return Err(CommandError::other(
                "ERR BITFIELD_RO only supports the GET subcommand",
            ));
        }
        Some(max_bit) => {
            let value = string_for_bits(exec, key, max_bit)?;
            for f in &fields {
                let reply = match f.op {
                    FieldOp::Get => Frame::Integer(if f.signed {
                        get_signed(value, f.offset, f.bits)
                    } else {
                        get_unsigned(value, f.offset, f.bits) as i64
                    }),
                    FieldOp::Set(v) | FieldOp::IncrBy(v) => {
                        let incr = matches!(f.op, FieldOp::IncrBy(_));
                        let (overflowed, new, ret) = if f.signed {
                            let old = get_signed(value, f.offset, f.bits);
                            if incr {
                                let (o, wrapped) = signed_overflow(old, v, f.bits, f.overflow);
                                let new = if o { wrapped } else { old.wrapping_add(v) };
                                (o, new as u64, new)
                            } else {
                                let (o, wrapped) = signed_overflow(v, 0, f.bits, f.overflow);
                                let new = if o { wrapped } else { v };
                                (o, new as u64, old)
                            }
                        } else {
                            let old = get_unsigned(value, f.offset, f.bits);
                            if incr {
                                let (o, wrapped) = unsigned_overflow(old, v, f.bits, f.overflow);
                                let new = if o {
                                    wrapped
                                } else {
                                    old.wrapping_add(v as u64)
                                };
                                (o, new, new as i64)
                            } else {
                                let (o, wrapped) =
                                    unsigned_overflow(v as u64, 0, f.bits, f.overflow);
                                let new = if o { wrapped } else { v as u64 };
                                (o, new, old as i64)
                            }
                        };
                        changed = true;
                        if overflowed && f.overflow == Overflow::Fail {
                            Frame::Null
                        } else {
                            set_bits(value, f.offset, f.bits, new);
                            Frame::Integer(ret)
                        }
                    }
                };
                replies.push(reply);
            }
        }
    }
    if changed {
        exec.modified(key);
    }
    Ok(Frame::Array(replies))
}

fn bitfield(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    bitfield_generic(exec, args, false)
}

fn bitfield_ro(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    bitfield_generic(exec, args, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfield_overflow_matches_redis() {
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Wrap), (true, 4));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Sat), (true, 255));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Sat), (true, 0));
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Wrap), (true, -126));
        assert_eq!(signed_overflow(-120, -10, 8, Overflow::Sat), (true, -128));
        assert_eq!(signed_overflow(1, 1, 8, Overflow::Wrap), (false, 0));
    }

    #[test]
    fn signed_fields_extend_the_sign() {
        let bytes = [0b1111_0000];
        assert_eq!(get_signed(&bytes, 0, 4), -1);
        assert_eq!(get_unsigned(&bytes, 0, 4), 15);
        assert_eq!(get_signed(&bytes, 4, 4), 0);
    }
}
