//! Time zones of the stats routes. Counts are kept per UTC day and per UTC
//! hour; a day of another zone is the run of UTC hours between two of its
//! midnights (23, 24 or 25 of them), so its counters are the sum of those
//! hours', exactly, whenever the zone's offset is a whole number of hours.
//! A zone at :30 or :45 from UTC on a day would need hours cut in half, so it
//! is refused for that day rather than answered approximately. Pure: the zone
//! database is built into the binary.

use glimpse_wire::Day;
use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

const HOUR_MS: i64 = 3_600_000;

/// A time zone the stats are asked in.
#[derive(Clone, Debug)]
pub(crate) struct Zone {
    tz: TimeZone,
    name: String,
}

/// Why a zone cannot be used: the message is the API's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ZoneError {
    #[error("`tz`: `{0}` is not a time zone this edge knows; use an IANA name such as `America/New_York`")]
    Unknown(String),
    #[error(
        "`tz`: {zone} is {offset} from UTC on {day}; counts are kept per UTC hour, so only a \
         zone whose offset is a whole number of hours can be summed into its days exactly"
    )]
    Fractional {
        zone: String,
        offset: String,
        day: Day,
    },
}

/// One UTC hour: the bucket counts are kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct UtcHour {
    pub day: Day,
    /// 0..=23.
    pub hour: u8,
}

impl UtcHour {
    pub fn start_ms(self) -> i64 {
        self.day.start_ms() + i64::from(self.hour) * HOUR_MS
    }

    /// The hour holding instant `ms`, if it is a day [`Day`] can name.
    fn of_ms(ms: i64) -> Option<UtcHour> {
        let day = Day::from_epoch_ms(ms)?;
        let hour = u8::try_from((ms - day.start_ms()) / HOUR_MS).ok()?;
        Some(UtcHour { day, hour })
    }
}

fn date_of(day: Day) -> Date {
    let (y, m, d) = day.ymd();
    // `Day` covers far fewer years than `Date`, and its parts are in range.
    Date::new(y as i16, m as i8, d as i8).unwrap_or_default()
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            tz: TimeZone::UTC,
            name: "UTC".to_owned(),
        }
    }

    /// The zone of IANA name `name`, as the `tz` parameter gives it.
    pub fn parse(name: &str) -> Result<Zone, ZoneError> {
        let tz = TimeZone::get(name).map_err(|_| ZoneError::Unknown(name.to_owned()))?;
        Ok(Zone {
            tz,
            name: name.to_owned(),
        })
    }

    /// The name as asked: what answers report as their `tz`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the zone's days are UTC's days (UTC itself, or any alias
    /// of it): those are answered from the day buckets, whose visitor
    /// sketches outlive the hourly ones.
    pub fn is_utc(&self) -> bool {
        // An offset of zero that no transition ever changes.
        self.tz.to_offset(Timestamp::UNIX_EPOCH) == Offset::UTC
            && self.tz.following(Timestamp::MIN).next().is_none()
    }

    /// The zone's date at instant `now_ms`.
    pub fn today(&self, now_ms: i64) -> Day {
        let date = Timestamp::from_millisecond(now_ms)
            .map(|ts| ts.to_zoned(self.tz.clone()).date())
            .unwrap_or_default();
        Day::from_ymd(
            i32::from(date.year()),
            date.month() as u32,
            date.day() as u32,
        )
        .unwrap_or_else(|| Day::from_days_since_epoch(0))
    }

    /// The instant local `day` starts, epoch ms (its first moment: midnight,
    /// or later where a transition skips midnight).
    fn day_start_ms(&self, day: Day) -> Option<i64> {
        let zoned = date_of(day).to_zoned(self.tz.clone()).ok()?;
        Some(zoned.start_of_day().ok()?.timestamp().as_millisecond())
    }

    /// The UTC hours local `day` is made of, in order; refused when the
    /// zone's offset is not a whole number of hours at some instant of it.
    pub fn day_hours(&self, day: Day) -> Result<Vec<UtcHour>, ZoneError> {
        let (start, end) = match (self.day_start_ms(day), self.day_start_ms(day.succ())) {
            (Some(start), Some(end)) => (start, end),
            _ => return Ok(Vec::new()),
        };
        let mut hours = Vec::with_capacity(25);
        let mut at = start;
        while at < end {
            let offset = self.offset_at(at);
            if offset.seconds() % 3_600 != 0 {
                return Err(ZoneError::Fractional {
                    zone: self.name.clone(),
                    offset: offset.to_string(),
                    day,
                });
            }
            hours.extend(UtcHour::of_ms(at));
            at += HOUR_MS;
        }
        Ok(hours)
    }

    fn offset_at(&self, ms: i64) -> Offset {
        Timestamp::from_millisecond(ms)
            .map(|ts| self.tz.to_offset(ts))
            .unwrap_or(Offset::UTC)
    }

    /// The start of `hour` as RFC 3339 in this zone: `Z` for UTC, else the
    /// zone's offset then (`2026-12-01T08:00:00-05:00`).
    pub fn hour_label(&self, hour: UtcHour) -> String {
        let Ok(ts) = Timestamp::from_millisecond(hour.start_ms()) else {
            return String::new();
        };
        if self.is_utc() {
            ts.to_string()
        } else {
            ts.display_with_offset(self.tz.to_offset(ts)).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    fn hour(d: &str, h: u8) -> UtcHour {
        UtcHour {
            day: day(d),
            hour: h,
        }
    }

    #[test]
    fn a_new_york_day_is_its_24_utc_hours_from_five() {
        let ny = Zone::parse("America/New_York").unwrap();
        assert!(!ny.is_utc());
        let hours = ny.day_hours(day("2026-12-01")).unwrap();
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[0], hour("2026-12-01", 5));
        assert_eq!(hours[23], hour("2026-12-02", 4));
        assert_eq!(ny.hour_label(hours[0]), "2026-12-01T00:00:00-05:00");
    }

    #[test]
    fn daylight_saving_days_have_23_and_25_hours() {
        let ny = Zone::parse("America/New_York").unwrap();
        // 2026-03-08: clocks spring forward; 2026-11-01: they fall back.
        let spring = ny.day_hours(day("2026-03-08")).unwrap();
        assert_eq!(spring.len(), 23);
        assert_eq!(spring[0], hour("2026-03-08", 5));
        assert_eq!(*spring.last().unwrap(), hour("2026-03-09", 3));
        let fall = ny.day_hours(day("2026-11-01")).unwrap();
        assert_eq!(fall.len(), 25);
        assert_eq!(fall[0], hour("2026-11-01", 4));
        assert_eq!(*fall.last().unwrap(), hour("2026-11-02", 4));
        // Consecutive local days tile the UTC hours: none twice, none left out.
        let next = ny.day_hours(day("2026-11-02")).unwrap();
        assert_eq!(next[0], hour("2026-11-02", 5));
    }

    #[test]
    fn a_tokyo_day_starts_at_fifteen_the_day_before() {
        let tokyo = Zone::parse("Asia/Tokyo").unwrap();
        let hours = tokyo.day_hours(day("2026-12-01")).unwrap();
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[0], hour("2026-11-30", 15));
        assert_eq!(hours[23], hour("2026-12-01", 14));
        assert_eq!(tokyo.hour_label(hours[0]), "2026-12-01T00:00:00+09:00");
    }

    #[test]
    fn utc_and_its_aliases_use_the_day_buckets() {
        for name in ["UTC", "Etc/UTC", "Etc/GMT"] {
            let zone = Zone::parse(name).unwrap();
            assert!(zone.is_utc(), "{name}");
            let hours = zone.day_hours(day("2026-12-01")).unwrap();
            assert_eq!(hours.len(), 24);
            assert_eq!(hours[0], hour("2026-12-01", 0));
        }
        assert_eq!(
            Zone::utc().hour_label(hour("2026-12-01", 13)),
            "2026-12-01T13:00:00Z"
        );
    }

    #[test]
    fn half_and_quarter_hour_zones_are_refused_with_the_reason() {
        for (name, offset) in [("Asia/Kolkata", "+05:30"), ("Asia/Kathmandu", "+05:45")] {
            let zone = Zone::parse(name).unwrap();
            let err = zone.day_hours(day("2026-12-01")).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(offset) && text.contains("whole number of hours"),
                "{text}"
            );
        }
    }

    #[test]
    fn unknown_zones_are_refused() {
        for bad in ["Mars/Olympus", "", "EST5EDT,M3", "../etc/passwd"] {
            assert!(
                matches!(Zone::parse(bad), Err(ZoneError::Unknown(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn today_is_the_zone_s_date() {
        // 2026-12-01T20:00Z is already the 2nd in Tokyo, still the 1st in New York.
        let now = hour("2026-12-01", 20).start_ms();
        assert_eq!(
            Zone::parse("Asia/Tokyo").unwrap().today(now),
            day("2026-12-02")
        );
        assert_eq!(
            Zone::parse("America/New_York").unwrap().today(now),
            day("2026-12-01")
        );
        assert_eq!(Zone::utc().today(now), day("2026-12-01"));
    }
}
