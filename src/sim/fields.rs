//! The simulator's view of a request body, whichever generation sent it: the open API's JSON
//! object, or the older API's form fields (with the query string as a fallback, as real
//! clients use it). Every getter answers a KakaoPay-shaped validation error, never a panic.

use super::error::SimError;
use serde_json::{Map, Value};

#[derive(Debug, Default)]
pub struct Fields(Map<String, Value>);

impl Fields {
    pub fn from_json(body: &[u8]) -> Result<Self, SimError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(_) => Err(SimError::invalid("request body must be a JSON object")),
            Err(e) => Err(SimError::invalid(format!(
                "request body is not valid JSON: {e}"
            ))),
        }
    }

    /// Form fields, with the query string's fields where the body lacks them.
    pub fn from_form(query: Option<&str>, body: &[u8]) -> Self {
        let mut map = Map::new();
        for source in [query.unwrap_or("").as_bytes(), body] {
            for (k, v) in url::form_urlencoded::parse(source) {
                map.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
        Fields(map)
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn optional_str(&self, name: &str, max: usize) -> Result<Option<String>, SimError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(SimError::invalid(format!("{name} must be a string"))),
        };
        if s.chars().count() > max {
            return Err(SimError::invalid(format!(
                "{name} must be at most {max} characters"
            )));
        }
        Ok(Some(s))
    }

    pub fn required_str(&self, name: &str, max: usize) -> Result<String, SimError> {
        match self.optional_str(name, max)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(SimError::invalid(format!("{name} is required"))),
        }
    }

    pub fn optional_exact_len(&self, name: &str, len: usize) -> Result<(), SimError> {
        match self.optional_str(name, len)? {
            Some(s) if s.chars().count() != len => Err(SimError::invalid(format!(
                "{name} must be {len} characters"
            ))),
            _ => Ok(()),
        }
    }

    pub fn cid(&self) -> Result<String, SimError> {
        let cid = self.required_str("cid", 10)?;
        if cid.chars().count() != 10 {
            return Err(SimError::invalid("cid must be 10 characters"));
        }
        Ok(cid)
    }

    pub fn optional_int(&self, name: &str) -> Result<Option<i64>, SimError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) if s.trim().is_empty() => return Ok(None),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        // KakaoPay's integers are Java `Integer`s: anything wider is refused, not wrapped.
        n.filter(|v| i32::try_from(*v).is_ok())
            .map(Some)
            .ok_or_else(|| {
                SimError::invalid(format!("{name} must be an integer of at most 2147483647"))
            })
    }

    pub fn required_int(&self, name: &str) -> Result<i64, SimError> {
        self.optional_int(name)?
            .ok_or_else(|| SimError::invalid(format!("{name} is required")))
    }

    /// A list field: a JSON array, or (form-encoded) a JSON array in a string.
    pub fn optional_string_list(&self, name: &str) -> Result<(), SimError> {
        self.optional_json(name, |v| {
            v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
        })
    }

    /// A map field of strings: a JSON object, or (form-encoded) one in a string.
    pub fn optional_string_map(&self, name: &str) -> Result<(), SimError> {
        self.optional_json(name, |v| {
            v.as_object()
                .is_some_and(|m| m.values().all(Value::is_string))
        })
    }

    fn optional_json(&self, name: &str, ok: impl Fn(&Value) -> bool) -> Result<(), SimError> {
        let Some(v) = self.get(name) else {
            return Ok(());
        };
        let parsed = match v {
            Value::String(s) => serde_json::from_str(s).ok(),
            other => Some(other.clone()),
        };
        if parsed.as_ref().is_some_and(ok) {
            Ok(())
        } else {
            Err(SimError::invalid(format!("{name} has the wrong shape")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_body_wins_over_query() {
        let f = Fields::from_form(Some("cid=QUERY00000&tid=T1"), b"cid=BODY000000");
        assert_eq!(f.required_str("cid", 20).unwrap(), "BODY000000");
        assert_eq!(f.required_str("tid", 20).unwrap(), "T1");
    }

    #[test]
    fn integers_from_json_numbers_or_form_strings_only() {
        let f = Fields::from_json(br#"{"a": 5, "b": "7", "c": 1.5, "d": "x", "e": true}"#).unwrap();
        assert_eq!(f.required_int("a").unwrap(), 5);
        assert_eq!(f.required_int("b").unwrap(), 7);
        for bad in ["c", "d", "e"] {
            assert_eq!(f.required_int(bad).unwrap_err().code, -2);
        }
        assert!(f.required_int("missing").is_err());
        let wide =
            Fields::from_json(br#"{"a": 2147483648, "b": -2147483649, "c": 2147483647}"#).unwrap();
        assert!(wide.required_int("a").is_err() && wide.required_int("b").is_err());
        assert_eq!(wide.required_int("c").unwrap(), i32::MAX as i64);
    }

    #[test]
    fn bad_bodies_are_kakaopay_errors() {
        assert!(Fields::from_json(b"[1,2]").is_err());
        assert!(Fields::from_json(b"{").is_err());
        assert!(Fields::from_json(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn lists_and_maps_in_either_encoding() {
        let f = Fields::from_json(br#"{"l": ["KB"], "m": {"k": "v"}, "bad": [1]}"#).unwrap();
        assert!(f.optional_string_list("l").is_ok());
        assert!(f.optional_string_map("m").is_ok());
        assert!(f.optional_string_list("bad").is_err());
        let g = Fields::from_form(None, b"l=%5B%22KB%22%5D");
        assert!(g.optional_string_list("l").is_ok());
    }
}
