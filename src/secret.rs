//! A string that must never be printed: KakaoPay keys, bearer tokens, signing secrets.
//!
//! `Debug` and `Display` print a fixed mask and `Serialize` writes the masked form, so a
//! secret that ends up in a log line, an error message or a response by accident shows
//! nothing. The only way to the real value is [`Secret::expose`], which is easy to grep for.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

const MASK: &str = "****";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that needs it (an `Authorization` header, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `****` followed by the last four characters, the form operators see in responses.
    /// A secret short enough that four characters would be a large part of it shows none.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 12 {
            return MASK.to_string();
        }
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{MASK}{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "DEV7A1C2E3F4B5D6978A0B1C2D3E4F5A6B7C8D9";

    #[test]
    fn debug_display_and_serialize_never_show_the_value() {
        let s = Secret::new(KEY);
        for shown in [
            format!("{s:?}"),
            format!("{s}"),
            format!("{:?}", Some(&s)),
            serde_json::to_string(&s).unwrap(),
        ] {
            assert!(!shown.contains("7A1C2E3F"), "leaked in {shown}");
        }
    }

    #[test]
    fn masked_keeps_the_last_four_of_long_secrets_only() {
        assert_eq!(Secret::new(KEY).masked(), "****C8D9");
        assert_eq!(Secret::new("short").masked(), "****");
        assert_eq!(
            serde_json::to_string(&Secret::new(KEY)).unwrap(),
            "\"****C8D9\""
        );
    }

    #[test]
    fn expose_gives_the_value() {
        assert_eq!(Secret::new(KEY).expose(), KEY);
        let back: Secret = serde_json::from_str(&format!("\"{KEY}\"")).unwrap();
        assert_eq!(back.expose(), KEY);
    }
}
