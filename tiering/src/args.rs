//! Argument parsing with Redis's rules and error texts.

use bytes::Bytes;

use crate::error::CommandError;

/// Returns true if `arg` equals `keyword`, ignoring ASCII case.
pub fn is(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// Parses an integer as Redis's `string2ll` (strict decimal, no spaces, no `+`).
pub fn int(arg: &[u8]) -> Result<i64, CommandError> {
    resp::request::parse_ll(arg).ok_or(CommandError::NotInteger)
}

/// Parses an integer that must be `>= 0`, failing with Redis's "out of range" text.
pub fn non_negative(arg: &[u8], error: &'static str) -> Result<i64, CommandError> {
    match int(arg) {
        Ok(value) if value >= 0 => Ok(value),
        Ok(_) => Err(CommandError::other(error)),
        Err(e) => Err(e),
    }
}

/// Parses an integer that must be `> 0`, failing with `error` otherwise.
pub fn positive(arg: &[u8], error: &'static str) -> Result<i64, CommandError> {
    match int(arg) {
        Ok(value) if value > 0 => Ok(value),
        Ok(_) => Err(CommandError::other(error)),
        Err(e) => Err(e),
    }
}

/// Parses a double as Redis's `getDoubleFromObject`: the whole argument, no leading space, no
/// NaN, no overflow to infinity or underflow to zero (`inf` itself is accepted).
pub fn float(arg: &[u8]) -> Result<f64, CommandError> {
    parse_float(arg).ok_or(CommandError::NotFloat)
}

/// Like [`float`], returning `None` instead of an error.
pub fn parse_float(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.as_bytes()[0].is_ascii_whitespace() {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    let literal_infinity = body == "inf" || body == "infinity";
    if body.starts_with("nan") || body.starts_with("0x") {
        return None;
    }
    let value: f64 = lower.parse().ok()?;
    if value.is_nan() || (value.is_infinite() && !literal_infinity) {
        return None;
    }
    if value == 0.0 {
        let mantissa = body.split('e').next().unwrap_or("");
        if mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
            return None;
        }
    }
    Some(value)
}

/// A cursor over a command's arguments for option parsing.
pub struct ArgIter<'a> {
    args: &'a [Bytes],
    pos: usize,
}

impl<'a> ArgIter<'a> {
    /// Iterates `args` starting at index `start`.
    pub fn new(args: &'a [Bytes], start: usize) -> Self {
        ArgIter { args, pos: start }
    }

    /// The next argument, if any.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<&'a Bytes> {
        let arg = self.args.get(self.pos)?;
        self.pos += 1;
        Some(arg)
    }

    /// The next argument, or a syntax error when there is none (an option missing its value).
    pub fn value(&mut self) -> Result<&'a Bytes, CommandError> {
        self.next().ok_or(CommandError::Syntax)
    }

    /// Arguments not consumed yet.
    pub fn remaining(&self) -> usize {
        self.args.len().saturating_sub(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_redis_reads_them() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_float(b"1e3"), Some(1000.0));
        assert_eq!(parse_float(b".5"), Some(0.5));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"1 "), None);
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b"1e400"), None);
        assert_eq!(parse_float(b"1e-400"), None);
        assert_eq!(parse_float(b"0.0"), Some(0.0));
        assert_eq!(parse_float(b""), None);
        assert_eq!(parse_float(b"abc"), None);
    }
}
