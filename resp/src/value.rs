//! Whole RESP2/RESP3 values, parsed from bytes: what a client reads. The server itself never
//! parses replies; tests, tools and the embedded command table do.

use bytes::Bytes;
use thiserror::Error;

use crate::frame::Frame;
use crate::request::parse_ll;

/// Deepest nesting accepted, so a hostile peer cannot overflow the stack.
const MAX_DEPTH: usize = 64;

/// Why bytes are not a RESP value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("invalid resp type byte {0:#04x}")]
    UnknownType(u8),
    #[error("invalid resp line: {0}")]
    BadLine(String),
    #[error("resp value nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Parses one value from the start of `input`.
///
/// Returns the value and the number of bytes it used, or `Ok(None)` if `input` holds only part of
/// a value. Attributes (`|`) are skipped, as most clients do.
pub fn parse(input: &[u8]) -> Result<Option<(Frame, usize)>, ValueError> {
    let mut pos = 0;
    match parse_at(input, &mut pos, 0)? {
        Some(frame) => Ok(Some((frame, pos))),
        None => Ok(None),
    }
}

fn line<'a>(input: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = &input[*pos..];
    let cr = memchr::memchr(b'\r', rest)?;
    if cr + 1 >= rest.len() {
        return None;
    }
    *pos += cr + 2;
    Some(&rest[..cr])
}

fn number(text: &[u8]) -> Result<i64, ValueError> {
    parse_ll(text).ok_or_else(|| ValueError::BadLine(String::from_utf8_lossy(text).into_owned()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_at(input: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Frame>, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::TooDeep);
    }
    let Some(&kind) = input.get(*pos) else {
        return Ok(None);
    };
    *pos += 1;
    let Some(head) = line(input, pos) else {
        return Ok(None);
    };
    let frame = match kind {
        b'+' => Frame::Simple(text(head).into()),
        b'-' => Frame::Error(text(head).into()),
        b':' => Frame::Integer(number(head)?),
        b'_' => Frame::Null,
        b'#' => Frame::Boolean(head == b"t"),
        b',' => {
            let value = match head {
                b"inf" => f64::INFINITY,
                b"-inf" => f64::NEG_INFINITY,
                other => text(other)
                    .parse()
                    .map_err(|_| ValueError::BadLine(text(other)))?,
            };
            Frame::Double(value)
        }
        b'(' => Frame::BigNumber(text(head)),
        b'$' | b'=' | b'!' => {
            let len = number(head)?;
            if len < 0 {
                return Ok(Some(Frame::Null));
            }
            let len = len as usize;
            if input.len() < *pos + len + 2 {
                return Ok(None);
            }
            let data = &input[*pos..*pos + len];
            *pos += len + 2;
            match kind {
                b'$' => Frame::Bulk(Bytes::copy_from_slice(data)),
                b'!' => Frame::Error(text(data).into()),
                _ => Frame::Verbatim(Bytes::copy_from_slice(data.get(4..).unwrap_or_default())),
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = number(head)?;
            if count < 0 {
                return Ok(Some(Frame::NullArray));
            }
            let elements = if matches!(kind, b'%' | b'|') {
                count as usize * 2
            } else {
                count as usize
            };
            let mut items = Vec::with_capacity(elements.min(1024));
            for _ in 0..elements {
                match parse_at(input, pos, depth + 1)? {
                    Some(item) => items.push(item),
                    None => return Ok(None),
                }
            }
            match kind {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                b'>' => Frame::Push(items),
                b'|' => return parse_at(input, pos, depth),
                _ => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut iter = items.into_iter();
                    while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
                        pairs.push((k, v));
                    }
                    Frame::Map(pairs)
                }
            }
        }
        other => return Err(ValueError::UnknownType(other)),
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode, Proto};

    #[test]
    fn round_trips_resp3() {
        let frame = Frame::Map(vec![
            (
                Frame::bulk(b"a"),
                Frame::Array(vec![Frame::Integer(1), Frame::Null]),
            ),
            (Frame::simple("b"), Frame::Set(vec![Frame::Double(2.5)])),
            (Frame::bulk(b"c"), Frame::Boolean(true)),
        ]);
        let mut out = bytes::BytesMut::new();
        encode(&frame, Proto::Resp3, &mut out);
        let (parsed, used) = parse(&out).unwrap().unwrap();
        assert_eq!(parsed, frame);
        assert_eq!(used, out.len());
        assert_eq!(parse(&out[..out.len() - 1]).unwrap(), None);
    }

    #[test]
    fn rejects_deep_nesting() {
        let input = "*1\r\n".repeat(100);
        assert_eq!(parse(input.as_bytes()), Err(ValueError::TooDeep));
    }
}
