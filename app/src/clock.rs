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
}
