//! Where "now" comes from. Domain functions take the time as an argument; the service reads it
//! from a `Clock` once per request, so tests move a `ManualClock` instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until moved; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    unix_millis: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            unix_millis: Arc::new(AtomicI64::new(to_millis(start))),
        }
    }

    /// Starting at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self::new(OffsetDateTime::now_utc())
    }

    pub fn advance(&self, by: std::time::Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.unix_millis.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        from_millis(self.unix_millis.load(Ordering::SeqCst))
    }
}

/// Unix epoch milliseconds, the unit of `expiresAt` and of every time column.
pub fn to_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// ISO 8601 / RFC 3339 in UTC, the format of every time in JSON but `expiresAt`.
pub fn iso8601(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The first millisecond `time` cannot show in RFC 3339: 10000-01-01T00:00:00Z.
const YEAR_10000_MILLIS: i64 = 253_402_300_800_000;

/// `iso8601(from_millis(ms))`, appended to `out`. `/user/me` shows its session's end on every
/// call; `time`'s formatter took ~430 instructions for it (callgrind: the i128 arithmetic of
/// `from_millis`, then a `String`). This converts days to a civil date by Howard Hinnant's
/// `civil_from_days` and writes the digits into a buffer on the stack. A test compares the two
/// over the whole `i64` range. Times before 1970 or from the year 10000 on take `iso8601`'s
/// path.
pub fn push_iso8601_millis(out: &mut Vec<u8>, ms: i64) {
    if !(0..YEAR_10000_MILLIS).contains(&ms) {
        out.extend_from_slice(iso8601(from_millis(ms)).as_bytes());
        return;
    }
    let (seconds, millis) = (ms / 1000, ms % 1000);
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    // civil_from_days, for days >= 0: eras of 400 years (146,097 days) counted from 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);

    let mut text = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], second_of_day / 3_600);
    put_digits(&mut text[14..16], second_of_day / 60 % 60);
    put_digits(&mut text[17..19], second_of_day % 60);
    // As `time` writes RFC 3339: the fraction without its trailing zeros, none when zero.
    let end = match millis {
        0 => 19,
        m if m % 100 == 0 => 21,
        m if m % 10 == 0 => 22,
        _ => 23,
    };
    put_digits(&mut text[20..23], millis);
    text[end] = b'Z';
    out.extend_from_slice(&text[..=end]);
}

/// `value`'s last `slot.len()` decimal digits, zero-padded, for the non-negative values
/// `push_iso8601_millis` has.
fn put_digits(slot: &mut [u8], mut value: i64) {
    for digit in slot.iter_mut().rev() {
        // value % 10 is 0..=9: the cast cannot truncate.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new(from_millis(1_000));
        let other = clock.clone();
        assert_eq!(to_millis(clock.now()), 1_000);
        other.advance(Duration::from_secs(2));
        assert_eq!(to_millis(clock.now()), 3_000);
    }

    #[test]
    fn iso8601_is_utc_with_z() {
        assert_eq!(iso8601(from_millis(0)), "1970-01-01T00:00:00Z");
    }

    fn pushed(ms: i64) -> String {
        let mut out = b"x".to_vec();
        push_iso8601_millis(&mut out, ms);
        String::from_utf8(out[1..].to_vec()).unwrap()
    }

    #[test]
    fn pushed_iso8601_at_the_edges() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (1_796_416_622_120, "2026-12-04T20:37:02.12Z"),
            (YEAR_10000_MILLIS - 100, "9999-12-31T23:59:59.9Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(pushed(ms), text);
            assert_eq!(iso8601(from_millis(ms)), text);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// The same text as `time` gives, in and out of the fast path's range.
        #[test]
        fn pushed_iso8601_is_times_rfc3339(
            ms in proptest::prop_oneof![
                0..YEAR_10000_MILLIS,
                YEAR_10000_MILLIS - 86_400_000..YEAR_10000_MILLIS + 86_400_000,
                -86_400_000..86_400_000_i64,
                proptest::prelude::any::<i64>(),
            ]
        ) {
            proptest::prop_assert_eq!(pushed(ms), iso8601(from_millis(ms)));
        }
    }
}
