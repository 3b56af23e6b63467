//! Query strings parsed by hand, so that a malformed one is still answered in API.md's error
//! body (axum's `Query` rejection has its own), with the paging parameters every listing
//! shares.

use super::error::ApiError;
use crate::store::Cursor;
use std::collections::HashMap;

pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// A parameter, empty counting as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A parameter parsed with `parse`, its error naming the parameter.
    pub fn typed<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Option<T>,
        expected: &str,
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| parse(v).ok_or_else(|| ApiError::invalid(name, format!("{name} {expected}"))))
            .transpose()
    }

    /// `limit`: 1 to `max`, `default` when absent.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        let limit = self.typed(
            "limit",
            |v| v.parse::<usize>().ok().filter(|l| (1..=max).contains(l)),
            &format!("must be 1 to {max}"),
        )?;
        Ok(limit.unwrap_or(default))
    }

    /// `cursor`: a `next_cursor` this service answered.
    pub fn cursor(&self) -> Result<Option<Cursor>, ApiError> {
        self.typed(
            "cursor",
            Cursor::decode,
            "must be a next_cursor this service answered",
        )
    }

    /// An RFC 3339 time as ms.
    pub fn time_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.typed(
            name,
            |v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .ok()
                    .map(|t| t.timestamp_millis())
            },
            "must be an RFC 3339 time with an offset",
        )
    }
}
