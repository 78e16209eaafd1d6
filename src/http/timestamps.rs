//! Timestamps as RFC 3339 text. No dependency on the rest of `http`, so
//! both the error bodies (`error.rs`) and the JSON writers (`json.rs`) use it.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ledger::TimestampMs;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, always with milliseconds. Formatted with
/// integer date arithmetic (Hinnant's civil-from-days) because every
/// reservation response carries two timestamps and the general-purpose
/// formatter showed in profiles; years outside 0..=9999 take the slow path.
pub fn rfc3339(at: TimestampMs) -> String {
    match rfc3339_text(at) {
        Some(text) => String::from_utf8_lossy(&text).into_owned(),
        None => rfc3339_slow(at),
    }
}

pub(super) fn rfc3339_slow(at: TimestampMs) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.0.to_string())
}

/// The fast path of [`rfc3339`]: `None` for years outside 0..=9999.
pub(super) fn rfc3339_text(at: TimestampMs) -> Option<[u8; 24]> {
    let ms = at.0.rem_euclid(1_000);
    let seconds = at.0.div_euclid(1_000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9_999).contains(&year) {
        return None;
    }
    let (hour, minute, second) = (
        second_of_day / 3_600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    );
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, value: i64| {
        let mut value = value;
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, i64::from(month));
    put(8, 2, i64::from(day));
    put(11, 2, hour);
    put(14, 2, minute);
    put(17, 2, second);
    put(20, 3, ms);
    Some(text)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
