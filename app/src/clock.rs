//! Times as people read them on the dashboard and the status page, always UTC.
//!
//! Written out by hand rather than with chrono's `format`: its strftime parser and
//! formatter are a sizeable part of the browser's wasm, and these four shapes are all we
//! show.

use chrono::{Datelike, Timelike};

use crate::wire::Timestamp;

/// `18:04:05`
pub fn hms(at: Timestamp) -> String {
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

/// `18:04:05.123`
pub fn hms_millis(at: Timestamp) -> String {
    format!("{}.{:03}", hms(at), at.timestamp_subsec_millis().min(999))
}

/// `2026-11-24 18:04:05 UTC`
pub fn date_time(at: Timestamp) -> String {
    format!("{:04}-{:02}-{:02} {} UTC", at.year(), at.month(), at.day(), hms(at))
}

/// `2026-11-24 18:04:05.123 UTC`
pub fn date_time_millis(at: Timestamp) -> String {
    format!(
        "{:04}-{:02}-{:02} {} UTC",
        at.year(),
        at.month(),
        at.day(),
        hms_millis(at)
    )
}

/// Reads a `datetime-local` input's value (`2026-11-24T18:04` or `…T18:04:05`) as UTC.
pub fn parse_minute(text: &str) -> Option<Timestamp> {
    let (date, time) = text.trim().split_once('T')?;
    let mut date = date.split('-').map(|part| part.parse::<u32>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let mut time = time.split(':').map(|part| part.parse::<u32>().ok());
    let (hour, minute) = (time.next()??, time.next()??);
    let second = time.next().flatten().unwrap_or(0);
    let naive =
        chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?.and_hms_opt(hour, minute, second)?;
    Some(naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_shapes_match_chronos_own_formatting() {
        for millis in [0_i64, 1_790_000_000_123, 1_790_000_000_999, 1_795_000_061_007] {
            let at = chrono::DateTime::from_timestamp_millis(millis).expect("time");
            assert_eq!(hms(at), at.format("%H:%M:%S").to_string());
            assert_eq!(hms_millis(at), at.format("%H:%M:%S%.3f").to_string());
            assert_eq!(date_time(at), at.format("%Y-%m-%d %H:%M:%S UTC").to_string());
            assert_eq!(date_time_millis(at), at.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string());
        }
    }

    #[test]
    fn datetime_local_values_read_as_utc() {
        let at = parse_minute("2026-11-24T18:04").expect("minutes");
        assert_eq!(date_time(at), "2026-11-24 18:04:00 UTC");
        assert_eq!(
            date_time(parse_minute("2026-11-24T18:04:05").expect("seconds")),
            "2026-11-24 18:04:05 UTC"
        );
        for bad in [
            "",
            "2026-11-24",
            "2026-13-01T00:00",
            "2026-11-24T25:00",
            "x-y-zT1:2",
            "2026-11-24T18",
        ] {
            assert_eq!(parse_minute(bad), None, "{bad}");
        }
    }
}
