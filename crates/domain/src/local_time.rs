//! The merchant's time: an instance's IANA time zone, and the two ways
//! Revel's wall-clock times meet instants.
//!
//! Revel writes `updated_date` without an offset, in the instance's own
//! time (the seed's order: `updated_date` 10:29:19 beside its rewards card's
//! 17:29:15+00:00, in a UTC-7 zone). So a naive timestamp is a *wall-clock
//! time*: read in the instance's zone it becomes an instant (a version), and
//! an instant (a checkpoint) is written back as a wall-clock time for
//! Revel's `updated_date__gte` filter.
//!
//! Wall-clock times are carried as "wall µs": the microseconds the wall
//! clock would show were it read as UTC. That is what
//! [`crate::sources::parse_timestamp_micros`] gives for a naive timestamp,
//! and it doesn't depend on any zone, which is why event keys are made of it.
//!
//! Zones come from jiff's bundled copy of the tz database
//! (`tzdb-bundle-always`): Lambda's `provided.al2023` image may have no
//! `/usr/share/zoneinfo`, and a zone that reads one way on a developer's
//! machine must read the same way in AWS.

use std::fmt;
use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// An IANA time zone, by name (`America/Los_Angeles`).
#[derive(Clone)]
pub struct Zone {
    name: Arc<str>,
    tz: TimeZone,
}

/// A name the tz database doesn't know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0:?} (an IANA name such as America/Los_Angeles)")]
pub struct UnknownZone(pub String);

impl Zone {
    pub fn utc() -> Self {
        Self {
            name: Arc::from("UTC"),
            tz: TimeZone::UTC,
        }
    }

    /// The zone of an IANA name; `UTC` is one too.
    pub fn parse(name: &str) -> Result<Self, UnknownZone> {
        let name = name.trim();
        let unknown = || UnknownZone(name.chars().take(64).collect());
        // Names only: jiff also reads POSIX TZ strings and offsets, which
        // follow no DST rules a merchant's clock keeps.
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
        {
            return Err(unknown());
        }
        let tz = TimeZone::get(name).map_err(|_| unknown())?;
        Ok(Self {
            name: Arc::from(tz.iana_name().unwrap_or(name)),
            tz,
        })
    }

    /// The IANA name, as the tz database spells it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone's offset from UTC at `instant_micros`, in seconds.
    pub fn offset_seconds(&self, instant_micros: i64) -> i32 {
        Timestamp::from_microsecond(instant_micros)
            .map(|ts| self.tz.to_offset(ts).seconds())
            .unwrap_or(0)
    }

    /// The wall clock (wall µs) at `instant_micros`.
    pub fn wall_of(&self, instant_micros: i64) -> i64 {
        instant_micros + i64::from(self.offset_seconds(instant_micros)) * 1_000_000
    }

    /// The instant a wall-clock time (wall µs) names in this zone. A time
    /// the clocks skipped (spring forward) is read with the offset before
    /// the gap, so it lands as far past the gap as it was into it (02:30 in
    /// Los Angeles on that night is 03:30 PDT); a time they showed twice (fall
    /// back) is read as its first showing. Revel gives no offset to tell
    /// the two showings apart, so within that one hour two changes may rank
    /// in the wrong order: it can't be helped, and only that hour is affected.
    pub fn instant_of_wall(&self, wall_micros: i64) -> Option<i64> {
        let wall = Timestamp::from_microsecond(wall_micros).ok()?;
        let civil = TimeZone::UTC.to_datetime(wall);
        let instant = self.tz.to_ambiguous_timestamp(civil).compatible().ok()?;
        Some(instant.as_microsecond())
    }

    /// The wall-clock time (wall µs) from which Revel's `updated_date__gte`
    /// finds every object updated at or after `since_micros` (an instant),
    /// as of `now_micros`. The wall clock at `since`, unless the clocks went
    /// back between then and now: an object updated after a fall-back shows
    /// an earlier wall-clock time than `since`'s, so the filter starts that
    /// much earlier (a few objects are fetched again; none is missed).
    pub fn filter_from(&self, since_micros: i64, now_micros: i64) -> i64 {
        let mut lowest = self.offset_seconds(since_micros);
        if let Ok(since) = Timestamp::from_microsecond(since_micros) {
            // Bounded: a checkpoint years old meets two transitions a year.
            for transition in self.tz.following(since).take(64) {
                if transition.timestamp().as_microsecond() > now_micros {
                    break;
                }
                lowest = lowest.min(transition.offset().seconds());
            }
        }
        since_micros + i64::from(lowest) * 1_000_000
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self::utc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::parse_timestamp_micros;

    fn at(raw: &str) -> i64 {
        parse_timestamp_micros(raw).unwrap()
    }

    fn los_angeles() -> Zone {
        Zone::parse("America/Los_Angeles").unwrap()
    }

    #[test]
    fn iana_names_are_zones_and_anything_else_is_refused_by_name() {
        assert_eq!(los_angeles().name(), "America/Los_Angeles");
        assert_eq!(Zone::parse(" UTC ").unwrap(), Zone::utc());
        for bad in [
            "",
            "Mars/Olympus_Mons",
            "PST8PDT,M3.2.0,M11.1.0",
            "+05:00",
            "America/../etc",
        ] {
            assert!(Zone::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_wall_clock_time_in_los_angeles_is_seven_hours_behind_utc_in_april_and_eight_in_december() {
        let la = los_angeles();
        assert_eq!(
            la.instant_of_wall(at("2016-04-13T10:29:19")),
            Some(at("2016-04-13T17:29:19Z"))
        );
        assert_eq!(
            la.instant_of_wall(at("2016-12-13T10:29:19")),
            Some(at("2016-12-13T18:29:19Z"))
        );
        assert_eq!(
            la.wall_of(at("2016-12-13T18:29:19Z")),
            at("2016-12-13T10:29:19")
        );
    }

    #[test]
    fn skipped_wall_times_land_after_the_gap_and_repeated_ones_on_their_first_showing() {
        let la = los_angeles();
        // 2026-03-08: 02:00 PST becomes 03:00 PDT; 02:30 never shows.
        assert_eq!(
            la.instant_of_wall(at("2026-03-08T02:30:00")),
            Some(at("2026-03-08T10:30:00Z"))
        );
        // 2026-11-01: 01:30 shows first in PDT (08:30Z), then in PST (09:30Z).
        assert_eq!(
            la.instant_of_wall(at("2026-11-01T01:30:00")),
            Some(at("2026-11-01T08:30:00Z"))
        );
    }

    #[test]
    fn a_filter_across_a_fall_back_starts_an_hour_earlier_on_the_wall_clock() {
        let la = los_angeles();
        let since = at("2026-11-01T08:40:00Z"); // 01:40 PDT
        let now = at("2026-11-01T09:20:00Z"); // 01:20 PST
        assert_eq!(la.filter_from(since, now), at("2026-11-01T00:40:00"));
        // Without a transition in between, the wall clock at `since`.
        let quiet = at("2026-11-20T23:00:00Z");
        assert_eq!(
            la.filter_from(quiet, quiet + 3_600_000_000),
            at("2026-11-20T15:00:00")
        );
        assert_eq!(Zone::utc().filter_from(quiet, quiet), quiet);
    }
}
