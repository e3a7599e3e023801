//! Requests from client bytes, as Redis's `processMultibulkBuffer` and `processInlineBuffer` read
//! them: the same limits, the same error texts, and no allocation beyond what was received.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::inline::split_args;

/// Longest inline request, and longest `*N` / `$N` header line, Redis accepts (64 KiB).
pub const INLINE_MAX_SIZE: usize = 64 * 1024;

/// Bulk arguments this big are copied into a buffer reserved for them, not grown byte by byte.
const BIG_ARG: usize = 32 * 1024;

/// Most arguments pre-allocated for a multibulk header; a larger count grows as arguments arrive,
/// so a client cannot make the server allocate for arguments it never sends.
const ARGV_PREALLOC: usize = 1024;

/// The limits a client's input is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `proto-max-bulk-len`: the longest bulk argument (512 MiB by default).
    pub max_bulk_len: usize,
    /// `client-query-buffer-limit`: the most bytes of unprocessed input per client (1 GiB).
    pub max_query_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_query_buffer: 1024 * 1024 * 1024,
        }
    }
}

/// Decodes requests from a connection's input buffer, keeping a half-received multibulk request
/// between calls so that a long request is never scanned twice.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    /// Arguments still expected by the multibulk request being read (0: none in progress).
    remaining: usize,
    /// Length of the bulk argument whose header was read, if any.
    bulk_len: Option<usize>,
    args: Vec<Bytes>,
    /// A returned argument vector, reused for the next request to save an allocation.
    spare: Vec<Bytes>,
    /// Bytes held in `args`, counted against the query buffer limit.
    args_bytes: usize,
}

impl RequestDecoder {
    /// Creates a decoder with no request in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives back a request's argument vector once it is no longer needed, so the next request
    /// reuses its allocation. Large vectors are dropped, not kept.
    pub fn recycle(&mut self, mut args: Vec<Bytes>) {
        if args.capacity() <= ARGV_PREALLOC && args.capacity() > self.spare.capacity() {
            args.clear();
            self.spare = args;
        }
    }

    /// Bytes of input held by a request in progress (besides the connection's buffer).
    pub fn pending_bytes(&self) -> usize {
        self.args_bytes
    }

    /// Decodes the next request from `buf`, consuming its bytes.
    ///
    /// Returns `Ok(None)` when more input is needed and `Ok(Some(args))` for a request; `args`
    /// may be empty (`*0`, a blank inline line), which Redis silently skips. `authenticated`
    /// is false while the connection still has to AUTH: such clients may only send small
    /// requests.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if self.remaining == 0 {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first != b'*' {
                return decode_inline(buf);
            }
            let Some(line_end) = header_line(buf)? else {
                return if buf.len() > INLINE_MAX_SIZE {
                    Err(ProtocolError::TooBigMultibulkCount)
                } else {
                    Ok(None)
                };
            };
            let count = parse_ll(&buf[1..line_end]).ok_or(ProtocolError::InvalidMultibulkLength)?;
            if count > i32::MAX as i64 {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            if count > 10 && !authenticated {
                return Err(ProtocolError::UnauthenticatedMultibulkLength);
            }
            buf.advance(line_end + 2);
            if count <= 0 {
                return Ok(Some(Vec::new()));
            }
            self.remaining = count as usize;
            self.args = std::mem::take(&mut self.spare);
            self.args.reserve(self.remaining.min(ARGV_PREALLOC));
            self.args_bytes = 0;
        }

        while self.remaining > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => {
                    let Some(line_end) = header_line(buf)? else {
                        if buf.len() > INLINE_MAX_SIZE {
                            return Err(ProtocolError::TooBigBulkCount);
                        }
                        return Ok(None);
                    };
                    if buf[0] != b'$' {
                        return Err(ProtocolError::ExpectedBulk(buf[0]));
                    }
                    let len = parse_ll(&buf[1..line_end])
                        .filter(|&len| len >= 0 && len as u64 <= limits.max_bulk_len as u64)
                        .ok_or(ProtocolError::InvalidBulkLength)?
                        as usize;
                    if len > 16384 && !authenticated {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    buf.advance(line_end + 2);
                    if len >= BIG_ARG {
                        // Reserve once for the whole argument instead of growing repeatedly.
                        buf.reserve(len + 2);
                    }
                    self.bulk_len = Some(len);
                    len
                }
            };
            if buf.len() < len + 2 {
                return Ok(None);
            }
            let arg = buf.split_to(len).freeze();
            // Like Redis, the two bytes after the data are taken as the line ending unchecked.
            buf.advance(2);
            self.args_bytes += arg.len();
            self.args.push(arg);
            self.bulk_len = None;
            self.remaining -= 1;
        }
        self.args_bytes = 0;
        Ok(Some(std::mem::take(&mut self.args)))
    }
}

/// Finds the `\r` ending a `*N` or `$N` header line that is fully in `buf` (its `\n` included).
fn header_line(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let search = &buf[..buf.len().min(INLINE_MAX_SIZE + 1)];
    match memchr::memchr(b'\r', search) {
        Some(cr) if cr + 2 <= buf.len() => Ok(Some(cr)),
        _ => Ok(None),
    }
}

fn decode_inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(newline) = memchr::memchr(b'\n', buf) else {
        if buf.len() > INLINE_MAX_SIZE {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(None);
    };
    let line_len = if newline > 0 && buf[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    };
    let args = split_args(&buf[..line_len])?;
    buf.advance(newline + 1);
    Ok(Some(args.into_iter().map(Bytes::from).collect()))
}

/// Parses a decimal integer as Redis's `string2ll`: an optional `-`, no `+`, no leading zeros,
/// no spaces, no empty string, and within `i64`.
pub fn parse_ll(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text[0] {
        b'-' => (true, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    if negative {
        if value > i64::MAX as u64 + 1 {
            None
        } else {
            Some((value as i64).wrapping_neg())
        }
    } else {
        i64::try_from(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = decoder.decode(&mut buf, &Limits::default(), true)? {
            out.push(args.iter().map(|a| a.to_vec()).collect());
        }
        Ok(out)
    }

    #[test]
    fn multibulk_and_inline_pipeline() {
        let got =
            decode_all(b"*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], [b"GET".to_vec(), b"a".to_vec()]);
        assert_eq!(got[1], [b"PING".to_vec()]);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input = b"*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$5\r\nworld\r\n";
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = None;
        for &byte in input.iter() {
            buf.extend_from_slice(&[byte]);
            if let Some(args) = decoder.decode(&mut buf, &Limits::default(), true).unwrap() {
                got = Some(args);
            }
        }
        let got = got.expect("request decoded");
        assert_eq!(got.len(), 3);
        assert_eq!(&got[2][..], b"world");
        assert!(buf.is_empty());
    }

    #[test]
    fn redis_errors() {
        assert_eq!(
            decode_all(b"*x\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n+a\r\n"),
            Err(ProtocolError::ExpectedBulk(b'+'))
        );
        assert_eq!(
            decode_all(b"*1\r\n$-2\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n$536870913\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            decode_all(b"*3000000000\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            decode_all(b"\"abc\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        let long = vec![b'a'; INLINE_MAX_SIZE + 1];
        assert_eq!(decode_all(&long), Err(ProtocolError::TooBigInline));
    }

    #[test]
    fn unauthenticated_limits() {
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        let err = RequestDecoder::new().decode(&mut buf, &Limits::default(), false);
        assert_eq!(err, Err(ProtocolError::UnauthenticatedMultibulkLength));
    }

    #[test]
    fn empty_requests_are_skipped_not_errors() {
        let got = decode_all(b"*0\r\n*-1\r\n\r\n").unwrap();
        assert_eq!(got, vec![Vec::<Vec<u8>>::new(); 3]);
    }

    #[test]
    fn string2ll_rules() {
        assert_eq!(parse_ll(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_ll(b"9223372036854775808"), None);
        assert_eq!(parse_ll(b"01"), None);
        assert_eq!(parse_ll(b"+1"), None);
        assert_eq!(parse_ll(b"-0"), None);
        assert_eq!(parse_ll(b""), None);
    }
}
