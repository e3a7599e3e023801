//! Doubles as Redis prints them.
//!
//! Redis 7.0 replies with `printf("%.17g")` for scores and RESP3 doubles, so `1.1` comes back as
//! `1.1000000000000001`. Rust has no `%g`, so this module rebuilds it from Rust's exact
//! scientific formatting: 17 significant digits, fixed notation for exponents in `-4..17`,
//! scientific otherwise, trailing zeros removed.

/// Formats `value` as C's `%.17g` does, with Redis's spelling of infinities (`inf`, `-inf`).
pub fn format_double(value: f64) -> String {
    format_significant(value, 17)
}

/// Formats `value` as C's `%.{digits}g` does.
pub fn format_significant(value: f64, digits: usize) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let precision = digits.max(1);
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("rust always writes an exponent in {:e}");
    let exponent: i32 = exponent.parse().expect("rust writes a decimal exponent");
    let negative = mantissa.starts_with('-');
    let digits_only: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();

    let mut out = String::with_capacity(precision + 8);
    if negative {
        out.push('-');
    }
    if exponent < -4 || exponent >= precision as i32 {
        let trimmed = trim_fraction(&digits_only[1..]);
        out.push_str(&digits_only[..1]);
        if !trimmed.is_empty() {
            out.push('.');
            out.push_str(trimmed);
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push('0');
        }
        out.push_str(&magnitude.to_string());
    } else if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(trim_fraction(&digits_only));
    } else {
        let point = exponent as usize + 1;
        out.push_str(&digits_only[..point]);
        let fraction = trim_fraction(&digits_only[point..]);
        if !fraction.is_empty() {
            out.push('.');
            out.push_str(fraction);
        }
    }
    out
}

fn trim_fraction(digits: &str) -> &str {
    digits.trim_end_matches('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_printf_g17() {
        assert_eq!(format_double(1.1), "1.1000000000000001");
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(-2.5), "-2.5");
        assert_eq!(format_double(0.0001), "0.0001");
        assert_eq!(format_double(0.00001), "1.0000000000000001e-05");
        assert_eq!(format_double(1e17), "1e+17");
        assert_eq!(format_double(12345678901234567.0), "12345678901234568");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(1e300), "1.0000000000000001e+300");
        assert_eq!(format_double(0.5), "0.5");
        assert_eq!(format_double(100.0), "100");
    }

    #[test]
    fn fewer_digits() {
        assert_eq!(format_significant(1.1, 6), "1.1");
        assert_eq!(format_significant(1234567.0, 6), "1.23457e+06");
    }
}
