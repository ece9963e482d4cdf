//! Injectable time. Everything in the assessor that reads "now" goes through
//! a [`Clock`], so tests can move time forward by days in a millisecond.

use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// How far this clock is ahead of real time. Timestamps that other
    /// components record in real time (the registry's pull records) are
    /// shifted by this offset into the assessor's time.
    fn offset(&self) -> Duration {
        self.now() - OffsetDateTime::now_utc()
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
    fn offset(&self) -> Duration {
        Duration::ZERO
    }
}

/// A clock that ticks with real time plus an adjustable offset; tests move
/// it with [`ManualClock::advance`].
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    offset: Arc<Mutex<Duration>>,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Move the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + *self.offset.lock().expect("clock lock")
    }
    fn offset(&self) -> Duration {
        *self.offset.lock().expect("clock lock")
    }
}

/// Milliseconds since the Unix epoch: how times are stored.
pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Inverse of [`to_ms`].
pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 text for JSON.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A `YYYY-MM` month as usage is metered, parsed from `YYYY-MM` or a date
/// `YYYY-MM-DD` (which counts as its month). The one parser the CLI and
/// the API share.
pub fn parse_month(s: &str) -> Result<String, MonthError> {
    use time::format_description::BorrowedFormatItem;
    use time::macros::format_description;
    const MONTH: &[BorrowedFormatItem<'_>] = format_description!("[year]-[month]");
    const DATE: &[BorrowedFormatItem<'_>] = format_description!("[year]-[month]-[day]");
    let bad = || MonthError(s.to_string());
    let (year, month) = match time::Date::parse(s, DATE) {
        Ok(d) => (d.year(), d.month()),
        Err(_) => {
            let mut p = time::parsing::Parsed::new();
            let rest = p.parse_items(s.as_bytes(), MONTH).map_err(|_| bad())?;
            match (rest.is_empty(), p.year(), p.month()) {
                (true, Some(y), Some(m)) => (y, m),
                _ => return Err(bad()),
            }
        }
    };
    if !(0..=9999).contains(&year) {
        return Err(bad());
    }
    Ok(format!("{year:04}-{:02}", month as u8))
}

/// Text that is neither `YYYY-MM` nor `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a month YYYY-MM or a date YYYY-MM-DD, not {0:?}")]
pub struct MonthError(pub String);

#[cfg(test)]
mod month_tests {
    use super::parse_month;

    #[test]
    fn months_and_dates() {
        assert_eq!(parse_month("2026-03").unwrap(), "2026-03");
        assert_eq!(parse_month("2026-12-31").unwrap(), "2026-12");
        for bad in [
            "2026-13",
            "2026-3",
            "26-03",
            "2026-03-32",
            "2026-02-30",
            "2026",
            "2026-03-",
            "x",
            "2026-03-01x",
            "",
        ] {
            let e = parse_month(bad).unwrap_err();
            assert!(e.to_string().contains("YYYY-MM"), "{bad}: {e}");
        }
    }
}
