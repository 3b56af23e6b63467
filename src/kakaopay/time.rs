//! KakaoPay's timestamps: `2025-03-01T14:05:12`, no offset, meaning Korea time (UTC+9, no DST).

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const KST_SECONDS: i32 = 9 * 3600;
const FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

pub fn kst() -> FixedOffset {
    FixedOffset::east_opt(KST_SECONDS).expect("UTC+9 is a valid offset")
}

/// A KakaoPay timestamp, read as Korea time; one that does carry an offset keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KstTime(pub DateTime<FixedOffset>);

impl KstTime {
    pub fn now() -> Self {
        KstTime(Utc::now().with_timezone(&kst()))
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(KstTime(t));
        }
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .and_then(|naive| naive.and_local_timezone(kst()).single())
            .map(KstTime)
    }

    pub fn utc(self) -> DateTime<Utc> {
        self.0.with_timezone(&Utc)
    }
}

impl fmt::Display for KstTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.with_timezone(&kst()).format(FORMAT))
    }
}

impl Serialize for KstTime {
    /// Written the way KakaoPay writes it, so the simulator's output looks like the real thing.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KstTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        KstTime::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a KakaoPay timestamp: {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsetless_times_are_korea_time() {
        let t = KstTime::parse("2023-10-28T23:31:21").unwrap();
        assert_eq!(t.utc().to_rfc3339(), "2023-10-28T14:31:21+00:00");
        assert_eq!(t.to_string(), "2023-10-28T23:31:21");
    }

    #[test]
    fn fractions_spaces_and_offsets_are_tolerated() {
        assert!(KstTime::parse("2023-10-28T23:31:21.123").is_some());
        assert!(KstTime::parse("2023-10-28 23:31:21").is_some());
        let utc = KstTime::parse("2023-10-28T14:31:21Z").unwrap();
        assert_eq!(utc.to_string(), "2023-10-28T23:31:21");
    }

    #[test]
    fn garbage_is_refused() {
        for bad in ["", "yesterday", "2023-13-01T00:00:00", "2023-10-28"] {
            assert!(KstTime::parse(bad).is_none(), "{bad}");
        }
    }
}
