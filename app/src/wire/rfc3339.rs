//! Reading RFC 3339 timestamps (`2026-11-24T18:04:05.123456789Z`, or with an offset such
//! as `+01:00`) by hand, for every `Timestamp` on the wire.
//!
//! chrono's own reader goes through its general format parser, which is a sizeable part
//! of the browser's wasm; this covers exactly RFC 3339, which is all the wire carries.
//! Writing is still chrono's (`to_rfc3339` with `Z`).

use std::borrow::Cow;

use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Deserializer, de::Error as _};

use super::Timestamp;

/// For `#[serde(deserialize_with = "rfc3339::read")]`.
pub fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
    let text = Cow::<str>::deserialize(deserializer)?;
    parse(&text).ok_or_else(|| D::Error::custom(format!("not an RFC 3339 timestamp: {text:?}")))
}

/// For optional fields: `#[serde(default, deserialize_with = "rfc3339::read_option")]`.
pub fn read_option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
    match Option::<Cow<'_, str>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) => parse(&text)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("not an RFC 3339 timestamp: {text:?}"))),
    }
}

fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |value, byte| {
        byte.is_ascii_digit().then(|| value * 10 + u32::from(byte - b'0'))
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, `T` and `Z` in either case.
pub fn parse(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits(&bytes[0..4])?).ok()?,
        digits(&bytes[5..7])?,
        digits(&bytes[8..10])?,
    )?;
    let (hour, minute, second) = (
        digits(&bytes[11..13])?,
        digits(&bytes[14..16])?,
        digits(&bytes[17..19])?,
    );
    let mut rest = &bytes[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|byte| byte.is_ascii_digit()).count();
        if count == 0 {
            return None;
        }
        // Nanoseconds: the first nine digits, padded; further digits are below a nanosecond.
        let kept = &fraction[..count.min(9)];
        nanos = digits(kept)? * 10u32.pow(9 - kept.len() as u32);
        rest = &fraction[count..];
    }
    let offset_seconds = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let magnitude = (digits(&[*h1, *h2])? * 3600 + digits(&[*m1, *m2])? * 60) as i32;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    let local = date.and_hms_nano_opt(hour, minute, second, nanos)?;
    let offset = FixedOffset::east_opt(offset_seconds)?;
    Some(offset.from_local_datetime(&local).single()?.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_chrono_reads() {
        for text in [
            "2026-11-24T18:04:05Z",
            "2026-11-24T18:04:05.123Z",
            "2026-11-24T18:04:05.487589722Z",
            "2026-11-24T18:04:05.4875897229Z",
            "2026-11-24t18:04:05z",
            "2026-11-24T18:04:05+01:30",
            "2026-11-24T00:04:05-05:00",
            "2024-02-29T23:59:59.999999999Z",
        ] {
            let chrono: Timestamp = text.parse().unwrap_or_else(|_| panic!("chrono reads {text}"));
            assert_eq!(parse(text), Some(chrono), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_rfc_3339() {
        for text in [
            "",
            "2026-11-24",
            "2026-11-24T18:04:05",
            "2026-11-24T18:04:05.Z",
            "2026-13-24T18:04:05Z",
            "2025-02-29T18:04:05Z",
            "2026-11-24T24:04:05Z",
            "2026-11-24T18:04:05+0100",
            "2026-11-24X18:04:05Z",
            "20a6-11-24T18:04:05Z",
            "2026-11-24T18:04:05Zjunk",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn every_timestamp_written_is_read_back() {
        let at = chrono::DateTime::from_timestamp(1_790_000_000, 123_456_789).expect("time");
        let written = serde_json::to_value(at).expect("json");
        assert_eq!(parse(written.as_str().expect("text")), Some(at));
    }
}
