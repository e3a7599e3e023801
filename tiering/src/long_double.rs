//! Redis's INCRBYFLOAT and HINCRBYFLOAT arithmetic: x87 `long double` (80-bit) parsing,
//! addition and `%.17Lf` printing, so `0.1 + 0.2` prints `0.3` and sums near 2^63 round the way
//! Redis's do. Emulated in software with LLVM's APFloat port (`rustc_apfloat`).

use rustc_apfloat::ieee::{Quad, X87DoubleExtended as F80};
use rustc_apfloat::{Float, FloatConvert, Round, Status};

use crate::error::CommandError;

/// Parses a number as Redis's `getLongDoubleFromObject`: no leading space, the whole string,
/// no NaN, and no overflow to infinity or underflow to zero.
pub fn parse(text: &[u8]) -> Option<F80> {
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty() || text.as_bytes()[0].is_ascii_whitespace() {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if body.starts_with("nan") {
        return None;
    }
    let parsed = if body == "inf" || body == "infinity" {
        if lower.starts_with('-') {
            -F80::INFINITY
        } else {
            F80::INFINITY
        }
    } else {
        if !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
        {
            return None;
        }
        let result = F80::from_str_r(&lower, Round::NearestTiesToEven).ok()?;
        let out_of_range = result.status.intersects(Status::OVERFLOW)
            || (result.status.intersects(Status::UNDERFLOW) && result.value.is_zero());
        if out_of_range {
            return None;
        }
        result.value
    };
    (!parsed.is_nan()).then_some(parsed)
}

/// Adds an increment to a current value and prints the sum as Redis stores it.
pub fn add(current: &[u8], increment: &[u8]) -> Result<Vec<u8>, CommandError> {
    let a = parse(current).ok_or(CommandError::NotFloat)?;
    let b = parse(increment).ok_or(CommandError::NotFloat)?;
    let sum = a.add_r(b, Round::NearestTiesToEven).value;
    if !sum.is_finite() {
        return Err(CommandError::other(
            "ERR increment would produce NaN or Infinity",
        ));
    }
    Ok(format_human(sum).into_bytes())
}

/// `snprintf("%.17Lf")` with trailing zeros (and a trailing point) removed, `-0` as `0`.
pub fn format_human(value: F80) -> String {
    let negative = value.is_negative();
    let magnitude = value.abs();
    let mut digits = if magnitude < F80::from_u128(100_000_000_000_000_000_000).value {
        // |x| * 10^17 is exact in binary128 (64 + 40 significant bits), so rounding it to an
        // integer rounds the exact value, as printf does.
        let mut loses = false;
        let wide: Quad = magnitude.convert(&mut loses).value;
        let scale = Quad::from_u128(100_000_000_000_000_000).value;
        let scaled = wide.mul_r(scale, Round::NearestTiesToEven).value;
        let integral = scaled.round_to_integral(Round::NearestTiesToEven).value;
        let mut exact = true;
        let n = integral.to_u128_r(128, Round::TowardZero, &mut exact).value;
        let text = format!("{n:018}");
        let (int_part, frac) = text.split_at(text.len() - 17);
        format!("{int_part}.{frac}")
    } else {
        // Beyond 2^64 every x87 value is an integer: print it exactly.
        integer_digits(magnitude)
    };
    if digits.contains('.') {
        while digits.ends_with('0') {
            digits.pop();
        }
        if digits.ends_with('.') {
            digits.pop();
        }
    }
    if negative && digits != "0" {
        format!("-{digits}")
    } else {
        digits
    }
}

/// The exact decimal digits of a large integral x87 value: mantissa × 2^exponent.
fn integer_digits(value: F80) -> String {
    let bits = value.to_bits();
    let mantissa = bits as u64;
    let exponent = ((bits >> 64) & 0x7fff) as i64 - 16383 - 63;
    // Little-endian base-1e9 limbs.
    let mut limbs: Vec<u64> = vec![
        mantissa % 1_000_000_000,
        (mantissa / 1_000_000_000) % 1_000_000_000,
        mantissa / 1_000_000_000_000_000_000,
    ];
    for _ in 0..exponent.max(0) {
        let mut carry = 0;
        for limb in limbs.iter_mut() {
            let v = *limb * 2 + carry;
            *limb = v % 1_000_000_000;
            carry = v / 1_000_000_000;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut out = limbs.last().expect("at least one limb").to_string();
    for limb in limbs.iter().rev().skip(1) {
        out.push_str(&format!("{limb:09}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_str(a: &str, b: &str) -> String {
        String::from_utf8(add(a.as_bytes(), b.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn sums_print_like_redis() {
        assert_eq!(add_str("0.1", "0.2"), "0.3");
        assert_eq!(add_str("10.5", "0.1"), "10.6");
        assert_eq!(add_str("5.0e3", "2.0e2"), "5200");
        assert_eq!(add_str("0", "-1.5"), "-1.5");
        assert_eq!(add_str("3", "-3"), "0");
        assert_eq!(add_str("9223372036854775807", "1.5"), "9223372036854775808");
        assert_eq!(add_str("1e30", "0"), "1000000000000000000024696061952");
        assert_eq!(
            add_str("16", "1.23456789012345678901"),
            "17.23456789012345679"
        );
        assert_eq!(add_str("0", "1e-20"), "0");
        assert_eq!(add_str("-0", "0"), "0");
    }

    #[test]
    fn bad_numbers_are_rejected() {
        assert!(add(b"abc", b"1").is_err());
        assert!(add(b"1", b" 1").is_err());
        assert!(add(b"1", b"nan").is_err());
        assert!(add(b"1", b"inf").is_err());
        assert!(add(b"1", b"1e99999").is_err());
        assert!(add(b"1", b"").is_err());
    }
}
