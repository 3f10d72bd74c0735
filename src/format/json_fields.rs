//! Reading fields of a `serde_json` value the way the line-by-line formats
//! (Codex, pi, Qwen…) need: strings at a path, the first of several alias
//! names, token counts (integers, or digit strings as some CLIs write them),
//! timestamps as RFC 3339 strings or Unix numbers, and whole lines.

use serde_json::Value;

use crate::format::MalformedKind;

/// Largest count one field of one event may carry.
pub const MAX_TOKENS: u64 = 10_000_000_000;

/// The latest timestamp a row may carry (the `ts` column is 32-bit seconds).
const MAX_TS_MS: i64 = u32::MAX as i64 * 1000;

/// One line as a JSON object, or why it is malformed.
pub fn object(line: &[u8]) -> Result<serde_json::Map<String, Value>, MalformedKind> {
    let text = std::str::from_utf8(line).map_err(|_| MalformedKind::InvalidUtf8)?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(MalformedKind::NotObject),
        Err(e) if e.to_string().contains("recursion limit") => Err(MalformedKind::TooDeep),
        Err(_) => Err(MalformedKind::InvalidJson),
    }
}

/// The non-empty string at `path` under `v`.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// The first of `names` present and not null in `u`.
pub fn first<'a>(u: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| u.get(n)).filter(|v| !v.is_null())
}

/// A count: absent or null is 0; an integer, or a string of digits.
pub fn count(v: Option<&Value>) -> Result<u64, MalformedKind> {
    let n = match v {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Number(n)) => n.as_u64().ok_or(MalformedKind::BadTokenCount)?,
        Some(Value::String(s)) => s.trim().parse().map_err(|_| MalformedKind::BadTokenCount)?,
        Some(_) => return Err(MalformedKind::BadTokenCount),
    };
    if n > MAX_TOKENS {
        return Err(MalformedKind::BadTokenCount);
    }
    Ok(n)
}

/// A cost the source recorded: absent or null is `None`; otherwise a
/// finite, non-negative number.
pub fn cost(v: Option<&Value>) -> Result<Option<f64>, MalformedKind> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(c) if c.is_finite() && c >= 0.0 => Ok(Some(c)),
            _ => Err(MalformedKind::MistypedField),
        },
        Some(_) => Err(MalformedKind::MistypedField),
    }
}

/// A time as Unix ms: an RFC 3339 string, or a number of Unix seconds
/// (below 10^11) or milliseconds. `None` when absent or null.
pub fn time_ms(v: Option<&Value>) -> Result<Option<i64>, MalformedKind> {
    let ms = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => crate::timestamp::parse_rfc3339_ms(s),
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).map(|f| {
            if f.abs() < 1e11 {
                (f * 1000.0).round() as i64
            } else {
                f.round() as i64
            }
        }),
        Some(_) => None,
    };
    ms.filter(|t| (0..=MAX_TS_MS).contains(t))
        .map(Some)
        .ok_or(MalformedKind::BadTimestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_accept_integers_and_digit_strings_only() {
        assert_eq!(count(None), Ok(0));
        assert_eq!(count(Some(&json!(null))), Ok(0));
        assert_eq!(count(Some(&json!(12))), Ok(12));
        assert_eq!(count(Some(&json!(" 12"))), Ok(12));
        for bad in [
            json!(-1),
            json!(1.5),
            json!("x"),
            json!([1]),
            json!(MAX_TOKENS + 1),
        ] {
            assert_eq!(
                count(Some(&bad)),
                Err(MalformedKind::BadTokenCount),
                "{bad}"
            );
        }
    }

    #[test]
    fn times_are_strings_seconds_or_milliseconds() {
        let s = json!("2026-11-20T10:00:02.000Z");
        assert_eq!(time_ms(Some(&s)), Ok(Some(1_795_168_802_000)));
        assert_eq!(
            time_ms(Some(&json!(1_795_428_002_000i64))),
            Ok(Some(1_795_428_002_000))
        );
        assert_eq!(
            time_ms(Some(&json!(1_795_428_002.5))),
            Ok(Some(1_795_428_002_500))
        );
        assert_eq!(time_ms(None), Ok(None));
        assert_eq!(
            time_ms(Some(&json!("yesterday"))),
            Err(MalformedKind::BadTimestamp)
        );
        assert_eq!(time_ms(Some(&json!(-5))), Err(MalformedKind::BadTimestamp));
    }

    #[test]
    fn costs_are_finite_and_not_negative() {
        assert_eq!(cost(Some(&json!(0.5))), Ok(Some(0.5)));
        assert_eq!(cost(Some(&json!(0))), Ok(Some(0.0)));
        assert_eq!(cost(None), Ok(None));
        assert_eq!(cost(Some(&json!(-1))), Err(MalformedKind::MistypedField));
        assert_eq!(cost(Some(&json!("1"))), Err(MalformedKind::MistypedField));
    }

    #[test]
    fn lines_are_objects() {
        assert!(object(br#"{"a":1}"#).is_ok());
        assert_eq!(object(b"[1]").unwrap_err(), MalformedKind::NotObject);
        assert_eq!(object(b"{").unwrap_err(), MalformedKind::InvalidJson);
        assert_eq!(
            object(b"{\"a\":\"\xff\"}").unwrap_err(),
            MalformedKind::InvalidUtf8
        );
    }
}
