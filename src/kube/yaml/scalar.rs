//! Plain scalars resolved as go-yaml v2 resolves them (its `resolve.go`): booleans in the case
//! forms it lists, octal/hex/binary and `_`-grouped integers, Go's float syntax, `~`/`null`; and
//! the Go number formatting sigs.k8s.io/yaml uses when a number becomes a map key.

use serde_json::{Number, Value};

use super::YamlError;

/// A resolved scalar; `Str` means the text itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str,
}

pub(super) fn scalar_to_json(s: Scalar, text: &str, line: usize) -> Result<Value, YamlError> {
    Ok(match s {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Int(i) => Value::from(i),
        Scalar::Uint(u) => Value::from(u),
        Scalar::Float(f) => {
            if !f.is_finite() {
                return Err(YamlError::at(
                    line,
                    format!("`{text}` is not a number JSON can hold"),
                ));
            }
            // kubectl sends the number as Go's JSON writes it, and the API server reads an
            // integral one back as an integer: `1e3` is stored as 1000.
            if f.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
            {
                Value::from(f as i64)
            } else {
                Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Scalar::Str => Value::String(text.to_string()),
    })
}

pub(super) fn resolve_scalar(
    value: &str,
    plain: bool,
    tag: Option<&str>,
    line: usize,
) -> Result<Scalar, YamlError> {
    match tag {
        // Quoted and block scalars without a tag are strings.
        None if !plain => Ok(Scalar::Str),
        None => Ok(resolve(value)),
        Some("str") => Ok(Scalar::Str),
        Some(t @ ("null" | "bool" | "int" | "float" | "timestamp")) => {
            let r = resolve(value);
            let fits = matches!(
                (t, r),
                ("null", Scalar::Null)
                    | ("bool", Scalar::Bool(_))
                    | ("int", Scalar::Int(_) | Scalar::Uint(_))
                    | ("float", Scalar::Float(_))
                    | ("timestamp", Scalar::Str)
            );
            match (t, r) {
                _ if fits => Ok(r),
                ("float", Scalar::Int(i)) => Ok(Scalar::Float(i as f64)),
                _ => Err(YamlError::at(
                    line,
                    format!("cannot decode `{value}` as a !!{t}"),
                )),
            }
        }
        Some("binary") => Err(YamlError::at(
            line,
            "!!binary values are not supported; write the text, or use a Secret's data field",
        )),
        // Any other tag: go-yaml leaves the text as it is.
        Some(_) => Ok(Scalar::Str),
    }
}

/// go-yaml v2's `resolve` for an untagged plain scalar.
pub fn resolve(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Scalar::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false)
        }
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match s.as_bytes()[0] {
        b'.' => {
            // strconv.ParseFloat of a text starting with '.': only `.digits[e±digits]`.
            if is_go_yaml_float(s) {
                if let Ok(f) = s.parse::<f64>() {
                    if f.is_finite() {
                        return Scalar::Float(f);
                    }
                }
            }
            Scalar::Str
        }
        b'0'..=b'9' | b'+' | b'-' => resolve_number(s),
        _ => Scalar::Str,
    }
}

fn resolve_number(s: &str) -> Scalar {
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    if let Ok(i) = go_parse_int(&plain, 0) {
        return Scalar::Int(i);
    }
    let uint = go_parse_uint(&plain, 0);
    if let Ok(u) = uint {
        return Scalar::Uint(u);
    }
    if is_go_yaml_float(&plain) {
        if let Ok(f) = plain.parse::<f64>() {
            // Go's ParseFloat fails on overflow, and go-yaml then keeps the text.
            if f.is_finite() {
                return Scalar::Float(f);
            }
        }
    }
    if let Some(rest) = plain.strip_prefix("0b") {
        if let Ok(i) = go_parse_int(rest, 2) {
            return Scalar::Int(i);
        }
        if let Ok(u) = go_parse_uint(rest, 2) {
            return Scalar::Uint(u);
        }
    } else if let Some(rest) = plain.strip_prefix("-0b") {
        if let Ok(i) = go_parse_int(&format!("-{rest}"), 2) {
            return Scalar::Int(i);
        }
    }
    // go-yaml v2 would make a big integer here, which JSON (and every Kubernetes field) can't
    // hold as an integer; the text stays a string, and the API server says which field is wrong.
    Scalar::Str
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_go_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[derive(Debug, PartialEq)]
enum GoParseError {
    Syntax,
    Range,
}

/// Go's `strconv.ParseUint(s, base, 64)`, base 0 meaning "from the prefix": `0x`, `0o`, `0b`,
/// or a leading `0` for octal. No sign is accepted.
fn go_parse_uint(s: &str, base: u32) -> Result<u64, GoParseError> {
    if s.is_empty() {
        return Err(GoParseError::Syntax);
    }
    let (base, digits) = if base == 0 {
        let b = s.as_bytes();
        if b[0] == b'0' {
            let prefixed = b.len() >= 3;
            match b.get(1).map(u8::to_ascii_lowercase) {
                Some(b'b') if prefixed => (2, &s[2..]),
                Some(b'o') if prefixed => (8, &s[2..]),
                Some(b'x') if prefixed => (16, &s[2..]),
                _ => (8, &s[1..]),
            }
        } else {
            (10, s)
        }
    } else {
        (base, s)
    };
    let mut n: u64 = 0;
    let mut overflow = false;
    for c in digits.chars() {
        let d = c.to_digit(36).ok_or(GoParseError::Syntax)?;
        if d >= base {
            return Err(GoParseError::Syntax);
        }
        match n
            .checked_mul(base as u64)
            .and_then(|n| n.checked_add(d as u64))
        {
            Some(v) => n = v,
            None => overflow = true,
        }
    }
    if overflow {
        return Err(GoParseError::Range);
    }
    Ok(n)
}

/// Go's `strconv.ParseInt(s, base, 64)`: an optional sign, then [`go_parse_uint`].
fn go_parse_int(s: &str, base: u32) -> Result<i64, GoParseError> {
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let u = go_parse_uint(rest, base)?;
    if neg {
        if u > 1u64 << 63 {
            return Err(GoParseError::Range);
        }
        Ok((u as i64).wrapping_neg())
    } else {
        i64::try_from(u).map_err(|_| GoParseError::Range)
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)` (how sigs.k8s.io/yaml writes a float key).
pub(super) fn go_format_float32_g(f: f64) -> String {
    let f = f as f32;
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    // Shortest digits and decimal exponent, from Rust's shortest round-trip form.
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Go's shortest 'g' switches to an exponent below 1e-4 and from 1e6 on.
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let (sign, m) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    format!(
        "{sign}{m}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_resolve_as_go_yaml_v2_resolves_them() {
        let cases: &[(&str, Scalar)] = &[
            ("yes", Scalar::Bool(true)),
            ("Yes", Scalar::Bool(true)),
            ("YES", Scalar::Bool(true)),
            ("yES", Scalar::Str),
            ("y", Scalar::Bool(true)),
            ("N", Scalar::Bool(false)),
            ("on", Scalar::Bool(true)),
            ("Off", Scalar::Bool(false)),
            ("oFF", Scalar::Str),
            ("True", Scalar::Bool(true)),
            ("tRUE", Scalar::Str),
            ("~", Scalar::Null),
            ("Null", Scalar::Null),
            ("nULL", Scalar::Str),
            ("0755", Scalar::Int(493)),
            ("0644", Scalar::Int(420)),
            ("0", Scalar::Int(0)),
            ("-0", Scalar::Int(0)),
            ("+1", Scalar::Int(1)),
            ("1_000", Scalar::Int(1000)),
            ("0x1F", Scalar::Int(31)),
            ("0X1f", Scalar::Int(31)),
            ("-0x1F", Scalar::Int(-31)),
            ("0o17", Scalar::Int(15)),
            ("0b101", Scalar::Int(5)),
            ("-0b101", Scalar::Int(-5)),
            ("0x", Scalar::Str),
            ("08", Scalar::Float(8.0)),
            ("1e3", Scalar::Float(1000.0)),
            ("1.", Scalar::Float(1.0)),
            (".5", Scalar::Float(0.5)),
            ("-.5", Scalar::Float(-0.5)),
            ("1e999", Scalar::Str),
            ("18446744073709551615", Scalar::Uint(u64::MAX)),
            ("99999999999999999999", Scalar::Float(1e20)),
            ("1.2.3", Scalar::Str),
            ("2001-12-14", Scalar::Str),
            ("12:30", Scalar::Str),
            ("-", Scalar::Str),
            ("+", Scalar::Str),
            (".", Scalar::Str),
            ("<<", Scalar::Str),
        ];
        for (text, want) in cases {
            assert_eq!(resolve(text), *want, "{text}");
        }
    }
}
