//! Numbers for people: bytes in binary units, nanoseconds in the largest
//! unit that keeps them above 1, counts with thousands separators.

use super::budget::Unit;

/// `v` in `unit`, readable: `1.50 MiB`, `12.3 ms`, `1,234,567`.
pub fn format(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => bytes(v),
        Unit::Nanoseconds => nanoseconds(v),
        Unit::Count => count(v),
        Unit::Ratio => ratio(v),
    }
}

/// The unit's name in JSON: `bytes`, `ns` or `count`.
pub fn name(unit: Unit) -> &'static str {
    match unit {
        Unit::Bytes => "bytes",
        Unit::Nanoseconds => "ns",
        Unit::Count => "count",
        Unit::Ratio => "ratio",
    }
}

/// The unit named `name` (see [`name`]); a count when unknown.
pub fn parse(name: &str) -> Unit {
    match name {
        "bytes" => Unit::Bytes,
        "ns" => Unit::Nanoseconds,
        "ratio" => Unit::Ratio,
        _ => Unit::Count,
    }
}

/// Bytes: `512 B`, `1.50 KiB`, `64.0 MiB`.
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() < 1024.0 {
        return format!("{} B", v.round() as i64);
    }
    let mut x = v / 1024.0;
    let mut i = 0;
    while x.abs() >= 1024.0 && i + 1 < UNITS.len() {
        x /= 1024.0;
        i += 1;
    }
    format!("{} {}", three_digits(x), UNITS[i])
}

/// Nanoseconds: `850 ns`, `12.3 µs`, `1.50 s`.
pub fn nanoseconds(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a < 1e3 {
        format!("{} ns", v.round() as i64)
    } else if a < 1e6 {
        format!("{} µs", three_digits(v / 1e3))
    } else if a < 1e9 {
        format!("{} ms", three_digits(v / 1e6))
    } else {
        format!("{} s", three_digits(v / 1e9))
    }
}

/// A count with thousands separators; fractions (weighted estimates) are
/// rounded.
pub fn count(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A signed change: `+1.50 KiB`, `-3`.
pub fn change(v: f64, unit: Unit) -> String {
    let s = format(v, unit);
    if v > 0.0 { format!("+{s}") } else { s }
}

/// A ratio to four significant digits: `0.01250`, `1.400`, `12.00`.
pub fn ratio(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return format!("{v}");
    }
    let decimals = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{v:.decimals$}")
}

/// Three significant digits: `1.50`, `12.3`, `512`.
fn three_digits(x: f64) -> String {
    let a = x.abs();
    if a < 10.0 {
        format!("{x:.2}")
    } else if a < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(bytes(64.0 * 1024.0 * 1024.0), "64.0 MiB");
        assert_eq!(bytes(-2048.0), "-2.00 KiB");
        assert_eq!(nanoseconds(850.0), "850 ns");
        assert_eq!(nanoseconds(12_345.0), "12.3 µs");
        assert_eq!(nanoseconds(1.5e9), "1.50 s");
        assert_eq!(count(1_234_567.0), "1,234,567");
        assert_eq!(count(-1000.0), "-1,000");
        assert_eq!(count(999.0), "999");
        assert_eq!(change(1536.0, Unit::Bytes), "+1.50 KiB");
        assert_eq!(change(-3.0, Unit::Count), "-3");
        assert_eq!(format(0.0125, Unit::Ratio), "0.01250");
        assert_eq!(format(1.4, Unit::Ratio), "1.400");
        assert_eq!(format(f64::NAN, Unit::Ratio), "NaN");
    }
}
