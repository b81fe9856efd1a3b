//! Wall-clock timestamps in RFC 3339 (UTC, millisecond precision), as the wire
//! contracts use them. Hand-written to keep a date crate out of the build.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

thread_local! {
    /// The last formatted millisecond: messages sent in a burst share it.
    static LAST: RefCell<(u128, String)> = const { RefCell::new((u128::MAX, String::new())) };
}

/// The current time as `2026-04-28T22:48:32.123Z`.
pub(crate) fn now_rfc3339() -> String {
    let now = SystemTime::now();
    let millis = now.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != millis {
            *last = (millis, format_rfc3339(now));
        }
        last.1.clone()
    })
}

/// Formats `time` as RFC 3339 in UTC with milliseconds. Times before the Unix
/// epoch are clamped to it (no clock on a host we support is set that far back).
pub(crate) fn format_rfc3339(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since_epoch.as_secs();
    let millis = since_epoch.subsec_millis();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Converts days since 1970-01-01 to a (year, month, day) civil date in the
/// proleptic Gregorian calendar (the well-known era-based algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_formats_as_1970() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn known_instant_formats_with_millis() {
        // 2026-04-28T22:48:32.123Z
        let t = UNIX_EPOCH + Duration::from_millis(1_777_416_512_123);
        assert_eq!(format_rfc3339(t), "2026-04-28T22:48:32.123Z");
    }

    #[test]
    fn leap_day_is_handled() {
        // 2024-02-29T12:00:00Z
        let t = UNIX_EPOCH + Duration::from_secs(1_709_208_000);
        assert_eq!(format_rfc3339(t), "2024-02-29T12:00:00.000Z");
    }
}
