//! Fuzzes the request decoder: arbitrary client bytes, split at an arbitrary point, must never
//! panic, and must decode to the same requests (or the same error) as when they arrive at once.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use resp::request::{Limits, RequestDecoder};

type Decoded = (Vec<Vec<Vec<u8>>>, Option<String>);

fn decode(chunks: &[&[u8]], limits: &Limits, authenticated: bool) -> Decoded {
    let mut decoder = RequestDecoder::new();
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf, limits, authenticated) {
                Ok(Some(args)) => requests.push(args.iter().map(|a| a.to_vec()).collect()),
                Ok(None) => break,
                Err(e) => return (requests, Some(e.to_string())),
            }
        }
    }
    (requests, None)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let authenticated = data[0] & 1 == 0;
    let input = &data[1..];
    let split = split.min(input.len());
    let limits = Limits {
        max_bulk_len: 1 << 20,
        max_query_buffer: 1 << 24,
    };
    let whole = decode(&[input], &limits, authenticated);
    let parts = decode(&[&input[..split], &input[split..]], &limits, authenticated);
    assert_eq!(whole, parts, "decoding depends on how the bytes were split");
    let _ = resp::inline::split_args(input);
    let _ = resp::value::parse(input);
});
