//! UTC calendar days, the bucket every count is kept in.
//!
//! A [`Day`] is a count of days since 1970-01-01. The conversions are the
//! proleptic Gregorian calendar done with integer arithmetic, so they need no
//! time zone database and no clock.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MS_PER_DAY: i64 = 86_400_000;
/// Days are limited to years 1970..=9999 so every `Day` prints as `YYYY-MM-DD`.
const MAX_YEAR: i32 = 9999;

/// One UTC calendar day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(u32);

/// Why a date string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayParseError(String);

impl fmt::Display for DayParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a date of the form YYYY-MM-DD", self.0)
    }
}

impl std::error::Error for DayParseError {}

impl Day {
    /// The day `n` days after 1970-01-01.
    pub const fn from_days_since_epoch(n: u32) -> Self {
        Day(n)
    }

    /// Days since 1970-01-01.
    pub const fn days_since_epoch(self) -> u32 {
        self.0
    }

    /// The UTC day that contains `ms` milliseconds since the epoch, or `None`
    /// before 1970.
    pub fn from_epoch_ms(ms: i64) -> Option<Self> {
        if ms < 0 {
            return None;
        }
        u32::try_from(ms / MS_PER_DAY).ok().map(Day)
    }

    /// The first millisecond of this day.
    pub fn start_ms(self) -> i64 {
        i64::from(self.0) * MS_PER_DAY
    }

    /// The day from a calendar date, or `None` when the date does not exist or
    /// lies outside 1970..=9999.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1970..=MAX_YEAR).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        // Count from 0000-03-01 so the leap day falls at the end of a year.
        let y = i64::from(if month <= 2 { year - 1 } else { year });
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let m = i64::from(month);
        let month_from_march = if m > 2 { m - 3 } else { m + 9 };
        let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        u32::try_from(days).ok().map(Day)
    }

    /// `(year, month, day)` of this date.
    pub fn ymd(self) -> (i32, u32, u32) {
        let z = i64::from(self.0) + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        (year as i32, month as u32, day as u32)
    }

    /// The next day.
    pub fn succ(self) -> Self {
        Day(self.0 + 1)
    }

    /// Whole days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Day) -> i64 {
        i64::from(later.0) - i64::from(self.0)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl FromStr for Day {
    type Err = DayParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DayParseError(s.to_owned());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            b[range].iter().try_fold(0u32, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let (y, m, d) = (digits(0..4), digits(5..7), digits(8..10));
        match (y, m, d) {
            (Some(y), Some(m), Some(d)) => Day::from_ymd(y as i32, m, d).ok_or_else(err),
            _ => Err(err()),
        }
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// In the OpenAPI document a day is what it is on the wire: a `YYYY-MM-DD`
/// string.
impl utoipa::PartialSchema for Day {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
            .description(Some(
                "A calendar day, `YYYY-MM-DD`: a UTC day unless the request names a `tz`.",
            ))
            .examples(["2026-12-01"])
            .into()
    }
}

impl utoipa::ToSchema for Day {}

/// An inclusive range of days, `from..=to`, never empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayRange {
    from: Day,
    to: Day,
}

/// Why a day range was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DayRangeError {
    /// `to` is before `from`.
    Reversed { from: Day, to: Day },
    /// More days than the limit.
    TooLong { days: i64, max: u32 },
}

impl fmt::Display for DayRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DayRangeError::Reversed { from, to } => {
                write!(f, "`to` ({to}) is before `from` ({from})")
            }
            DayRangeError::TooLong { days, max } => {
                write!(f, "the range spans {days} days; at most {max} are allowed")
            }
        }
    }
}

impl std::error::Error for DayRangeError {}

impl DayRange {
    /// At most this many days in one stats query.
    pub const MAX_DAYS: u32 = 366;

    /// `from..=to`, checked against [`Self::MAX_DAYS`].
    pub fn new(from: Day, to: Day) -> Result<Self, DayRangeError> {
        let span = from.days_until(to) + 1;
        if span < 1 {
            return Err(DayRangeError::Reversed { from, to });
        }
        if span > i64::from(Self::MAX_DAYS) {
            return Err(DayRangeError::TooLong {
                days: span,
                max: Self::MAX_DAYS,
            });
        }
        Ok(DayRange { from, to })
    }

    /// A range of one day.
    pub fn single(day: Day) -> Self {
        DayRange { from: day, to: day }
    }

    pub fn from(self) -> Day {
        self.from
    }

    pub fn to(self) -> Day {
        self.to
    }

    pub fn contains(self, day: Day) -> bool {
        self.from <= day && day <= self.to
    }

    /// Every day of the range, ascending.
    pub fn days(self) -> impl Iterator<Item = Day> {
        (self.from.0..=self.to.0).map(Day)
    }

    /// Number of days in the range.
    pub fn len(self) -> usize {
        (self.to.0 - self.from.0) as usize + 1
    }

    /// This range and a day more at each end, past [`Self::MAX_DAYS`] if it
    /// must: the UTC days that hold every hour of its days in any time zone
    /// (offsets from UTC are within a day), which a server reads to answer
    /// a checked range in a zone other than UTC.
    pub fn around(self) -> DayRange {
        DayRange {
            from: Day(self.from.0.saturating_sub(1)),
            to: self.to.succ(),
        }
    }

    /// Always false: a range holds at least one day.
    pub fn is_empty(self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(Day::from_ymd(1970, 1, 1), Some(Day(0)));
        assert_eq!(Day::from_ymd(2000, 3, 1).unwrap().to_string(), "2000-03-01");
        // 1764000000000 ms = 2025-11-24T16:00:00Z
        assert_eq!(
            Day::from_epoch_ms(1_764_000_000_000).unwrap().to_string(),
            "2025-11-24"
        );
    }

    #[test]
    fn round_trips_every_day_for_centuries() {
        for n in 0..(400 * 366) {
            let day = Day(n);
            let (y, m, d) = day.ymd();
            assert_eq!(Day::from_ymd(y, m, d), Some(day), "{y}-{m}-{d}");
            assert_eq!(day.to_string().parse::<Day>(), Ok(day));
        }
    }

    #[test]
    fn leap_years() {
        assert!(Day::from_ymd(2024, 2, 29).is_some());
        assert!(Day::from_ymd(2000, 2, 29).is_some());
        assert!(Day::from_ymd(2100, 2, 29).is_none());
        assert!(Day::from_ymd(2025, 2, 29).is_none());
    }

    #[test]
    fn rejects_malformed_dates() {
        for s in [
            "",
            "2025-1-01",
            "2025-13-01",
            "2025-00-10",
            "2025-04-31",
            "20251101",
            "2025/11/01",
            "1969-12-31",
            "+025-11-01",
            "2025-11-0a",
            "2025-11-01T",
        ] {
            assert!(s.parse::<Day>().is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn day_boundaries_are_utc_midnight() {
        let day = "2026-11-25".parse::<Day>().unwrap();
        assert_eq!(Day::from_epoch_ms(day.start_ms()), Some(day));
        assert_eq!(Day::from_epoch_ms(day.start_ms() - 1), Some(Day(day.0 - 1)));
        assert_eq!(Day::from_epoch_ms(day.succ().start_ms() - 1), Some(day));
        assert_eq!(Day::from_epoch_ms(-1), None);
    }

    #[test]
    fn ranges_are_inclusive_and_bounded() {
        let from = "2025-01-01".parse::<Day>().unwrap();
        let r = DayRange::new(from, from).unwrap();
        assert_eq!(r.len(), 1);
        let leap_year_end = "2024-12-31".parse::<Day>().unwrap();
        let r = DayRange::new("2024-01-01".parse().unwrap(), leap_year_end).unwrap();
        assert_eq!(r.len(), 366);
        assert_eq!(r.days().count(), 366);
        assert!(matches!(
            DayRange::new("2024-01-01".parse().unwrap(), "2025-01-01".parse().unwrap()),
            Err(DayRangeError::TooLong { days: 367, .. })
        ));
        assert!(matches!(
            DayRange::new(from.succ(), from),
            Err(DayRangeError::Reversed { .. })
        ));
    }
}
