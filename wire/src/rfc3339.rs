//! Reading RFC 3339 timestamps (`2026-11-24T18:04:05.123456789Z`, or with an offset such
//! as `+01:00`) by hand, for every `Timestamp` on the wire.
//!
//! chrono's own reader goes through its general format parser, which is a sizeable part
//! of the browser's wasm; this covers exactly RFC 3339, which is all the wire carries.
//!
//! Writing by hand too ([`write`]): the same text as chrono's `Serialize`
//! (`to_rfc3339_opts(SecondsFormat::AutoSi, true)`), but into a stack buffer instead of
//! through `fmt`: the server writes two or three timestamps for every stage event it
//! publishes.

use std::borrow::Cow;

use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Deserializer, de::Error as _};
#[cfg(not(target_arch = "wasm32"))]
use serde::{Serialize, Serializer};

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

/// For `#[serde(serialize_with = "rfc3339::write")]`, on the server only: the browser
/// writes timestamps just when it exports a journey, and there chrono's writer is kept
/// (using this one there cost the wasm 1.1 KB, brotli).
#[cfg(not(target_arch = "wasm32"))]
pub fn write<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0u8; MAX_LEN];
    match format(at, &mut buffer) {
        Some(text) => serializer.serialize_str(text),
        None => serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    }
}

/// For optional fields: `#[serde(serialize_with = "rfc3339::write_option")]`.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_option<S: Serializer>(at: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
    struct Written<'a>(&'a Timestamp);
    impl Serialize for Written<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            write(self.0, serializer)
        }
    }
    match at {
        Some(at) => serializer.serialize_some(&Written(at)),
        None => serializer.serialize_none(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, the longest [`format`] writes.
#[cfg(not(target_arch = "wasm32"))]
const MAX_LEN: usize = 30;

/// Writes `at` as chrono's `Serialize` does; `None` for what it leaves to chrono (years
/// outside 0–9999, a leap second).
#[cfg(not(target_arch = "wasm32"))]
fn format<'b>(at: &Timestamp, buffer: &'b mut [u8; MAX_LEN]) -> Option<&'b str> {
    use chrono::{Datelike, Timelike};
    let (date, time) = (at.date_naive(), at.time());
    let nanos = time.nanosecond();
    if !(0..=9999).contains(&date.year()) || nanos >= 1_000_000_000 {
        return None;
    }
    let mut put = |at: usize, value: u32, width: usize| {
        let mut value = value;
        for place in (at..at + width).rev() {
            buffer[place] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, date.year() as u32, 4);
    put(5, date.month(), 2);
    put(8, date.day(), 2);
    put(11, time.hour(), 2);
    put(14, time.minute(), 2);
    put(17, time.second(), 2);
    // Like chrono's `AutoSi`: no fraction, or 3, 6 or 9 digits, whichever is exact.
    let end = match nanos {
        0 => 19,
        _ if nanos % 1_000_000 == 0 => {
            put(20, nanos / 1_000_000, 3);
            23
        }
        _ if nanos % 1_000 == 0 => {
            put(20, nanos / 1_000, 6);
            26
        }
        _ => {
            put(20, nanos, 9);
            29
        }
    };
    for (place, byte) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.')] {
        buffer[place] = byte;
    }
    buffer[end] = b'Z';
    std::str::from_utf8(&buffer[..=end]).ok()
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
    fn writes_what_chrono_writes() {
        let base = Utc.with_ymd_and_hms(2026, 11, 24, 3, 48, 2).single().expect("valid");
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut cases = vec![base, base + chrono::Duration::nanoseconds(1)];
        for nanos in [0, 5_000_000, 120_000_000, 211_440_000, 211_440, 7, 999_999_999] {
            cases.push(base + chrono::Duration::nanoseconds(nanos));
        }
        for _ in 0..2_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Anywhere between 1970 and 2286, at any nanosecond; a third of them rounded
            // to micro- or milliseconds, as real clocks give.
            let nanos = (seed % (10_000_000_000 * 1_000_000_000)) as i64;
            let nanos = match seed % 3 {
                0 => nanos - nanos % 1_000,
                1 => nanos - nanos % 1_000_000,
                _ => nanos,
            };
            cases.push(Utc.timestamp_nanos(nanos));
        }
        cases.push(Utc.with_ymd_and_hms(12_000, 1, 1, 0, 0, 0).single().expect("valid"));
        for at in cases {
            let mut ours = serde_json::Serializer::new(Vec::new());
            write(&at, &mut ours).expect("writes");
            let ours = String::from_utf8(ours.into_inner()).expect("utf-8");
            assert_eq!(ours, serde_json::to_string(&at).expect("chrono writes"), "{at:?}");
        }
    }

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
