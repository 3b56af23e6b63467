//! What every board page shares: the layout, won and Korea-time formatting, form and query
//! parsing, error pages, and flashes (an action's outcome shown once on the page its redirect
//! leads to).
//!
//! Every value that goes into HTML goes through [`escape`] (or a formatter that escapes), and
//! every value that goes into a URL through [`enc`]: the pages show what members, the booking
//! system and KakaoPay wrote.

use super::super::error::ApiError;
use super::super::query::Query;
use super::super::AppState;
use crate::html::escape;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

/// Korea Standard Time: UTC+9 all year (no daylight saving since 1988).
fn kst_zone() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).expect("nine hours is an offset")
}

/// A value for one URL path segment or query value: everything but the unreserved
/// characters percent-encoded, so a job id's `:` or an order's `&` cannot change the URL.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Won as Koreans write it: `₩22,000`.
pub fn won(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(d);
    }
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}₩{grouped}")
}

/// A moment in Korea time, to the second: `2026-12-01 10:00:00 KST`.
pub fn kst(t: DateTime<Utc>) -> String {
    t.with_timezone(&kst_zone())
        .format("%Y-%m-%d %H:%M:%S KST")
        .to_string()
}

/// A stored RFC 3339 time (UTC) in Korea time; anything else as it is.
pub fn kst_of(raw: &str) -> String {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| kst(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| raw.to_string())
}

/// Milliseconds since the epoch (the queue's times) in Korea time.
pub fn kst_ms(ms: u64) -> String {
    DateTime::from_timestamp_millis(ms as i64)
        .map(kst)
        .unwrap_or_else(|| "-".to_string())
}

/// A minute since the epoch as `HH:MM` in Korea time (chart labels).
pub fn kst_minute(minute: u64) -> String {
    DateTime::from_timestamp(minute as i64 * 60, 0)
        .map(|t| t.with_timezone(&kst_zone()).format("%H:%M").to_string())
        .unwrap_or_default()
}

/// A stored time as HTML: Korea time to read, the UTC original in `datetime`.
pub fn when(raw: &str) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        escape(raw),
        escape(&kst_of(raw))
    )
}

pub fn when_ms(ms: u64) -> String {
    let utc = DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    format!("<time datetime=\"{utc}\">{}</time>", kst_ms(ms))
}

/// A time an operator typed: RFC 3339 with an offset, or a wall-clock time in Korea time
/// (`2026-12-01 10:00`, `2026-12-01T10:00:30`, as a `datetime-local` field sends it).
pub fn parse_kst_input(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.timestamp_millis());
    }
    let normal = raw.replacen(' ', "T", 1);
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&normal, f).ok())
        .and_then(|n| kst_zone().from_local_datetime(&n).single())
        .map(|t| t.timestamp_millis())
}

/// A duration in the largest unit that reads well: `45 s`, `12 min`, `3 h 5 min`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ if (s / 60).is_multiple_of(60) => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, (s / 60) % 60),
    }
}

/// A form body (`application/x-www-form-urlencoded`), read the way query strings are.
pub fn form(body: &[u8]) -> Query {
    Query::parse(Some(&String::from_utf8_lossy(body)))
}

/// A board page for a signed-in operator: navigation, the operator's name, a logout button.
/// A listing's HTML, or a mistake in the query that asked for it told on the page (400);
/// any other failure stays one.
pub fn listed(result: Result<String, Failure>) -> Result<(StatusCode, String), Failure> {
    match result {
        Ok(html) => Ok((StatusCode::OK, html)),
        Err(Failure(e)) if e.status == StatusCode::BAD_REQUEST => Ok((
            StatusCode::BAD_REQUEST,
            format!(
                "<p class=\"error\" id=\"error\">{}</p>",
                escape(&sentence(&e))
            ),
        )),
        Err(e) => Err(e),
    }
}

pub fn page(operator: &str, title: &str, body: &str) -> Response {
    page_with(StatusCode::OK, operator, title, body)
}

pub fn page_with(status: StatusCode, operator: &str, title: &str, body: &str) -> Response {
    let nav = format!(
        "<nav><a href=\"/board\">Overview</a> <a href=\"/board/reviews\">Reviews</a> \
         <a href=\"/board/queues/approve_payment\">approve_payment</a> \
         <a href=\"/board/queues/cancel_payment\">cancel_payment</a> \
         <a href=\"/board/queues/deliver_event\">deliver_event</a> \
         <a href=\"/board/workers\">Workers</a> <a href=\"/board/payments\">Payments</a>\
         <span class=\"who\">{} <form method=\"post\" action=\"/board/logout\" class=\"inline\">\
         <button id=\"logout\" type=\"submit\">Log out</button></form></span></nav>",
        escape(operator)
    );
    document(
        status,
        title,
        &format!("{nav}<h1>{}</h1>{body}", escape(title)),
    )
}

/// A page without navigation (the login form, a refusal).
pub fn bare_page(status: StatusCode, body: &str) -> Response {
    document(
        status,
        "kakaopay-worker",
        &format!("<h1>kakaopay-worker</h1>{body}"),
    )
}

fn document(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{} · kakaopay-worker board</title>\
         <link rel=\"stylesheet\" href=\"/board/board.css\">\
         <script src=\"/board/board.js\" defer></script></head><body>{body}</body></html>",
        escape(title)
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

pub fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

/// A board request that failed: the API's error, told on a page (never JSON, never a 500).
#[derive(Debug)]
pub struct Failure(pub ApiError);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure(e)
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        Failure(e.into())
    }
}

impl From<kakaopay_jobs::queue::QueueError> for Failure {
    fn from(e: kakaopay_jobs::queue::QueueError) -> Self {
        Failure(e.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let e = self.0;
        let body = format!(
            "<p class=\"error\" id=\"error\">{}</p><p><a href=\"/board\">Back to the board</a></p>",
            escape(&sentence(&e))
        );
        bare_page(e.status, &body)
    }
}

/// An API error as a sentence for a person: its message, starting with a capital.
pub fn sentence(e: &ApiError) -> String {
    let mut m = e.message.clone();
    if let Some(first) = m.get(0..1) {
        m.replace_range(0..1, &first.to_uppercase());
    }
    if !m.ends_with('.') {
        m.push('.');
    }
    m
}

/// What an action came to, shown once on the next page.
pub enum Flash {
    Done(String),
    Refused(String),
}

/// Keeps `flash` for the operator and redirects to `to`, which shows it.
pub async fn redirect_with(
    state: &AppState,
    operator: &str,
    to: &str,
    flash: Flash,
) -> Result<Response, Failure> {
    let kept = match flash {
        Flash::Done(text) => format!("ok\n{text}"),
        Flash::Refused(text) => format!("error\n{text}"),
    };
    let id = state.store.put_flash(operator, &kept).await?;
    let joint = if to.contains('?') { '&' } else { '?' };
    Ok(see_other(&format!("{to}{joint}flash={id}")))
}

/// The flash a redirect named, as HTML (empty when there is none, or it was shown already).
pub async fn flash_html(
    state: &AppState,
    operator: &str,
    query: &Query,
) -> Result<String, Failure> {
    let Some(id) = query.get("flash") else {
        return Ok(String::new());
    };
    let Some(kept) = state.store.take_flash(id, operator).await? else {
        return Ok(String::new());
    };
    let (kind, text) = kept.split_once('\n').unwrap_or(("ok", &kept));
    let class = if kind == "error" { "error" } else { "ok" };
    Ok(format!(
        "<p id=\"flash\" class=\"{class}\">{}</p>",
        escape(text)
    ))
}

/// A page's "next page" link (none on the last page): `base` with its filters, and the cursor.
pub fn next_link(base: &str, cursor: Option<&str>) -> String {
    match cursor {
        None => String::new(),
        Some(c) => {
            let joint = if base.contains('?') { '&' } else { '?' };
            format!(
                "<p><a id=\"next\" href=\"{}\">Next page →</a></p>",
                escape(&format!("{base}{joint}cursor={}", enc(c)))
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn won_has_thousands_separators() {
        assert_eq!(won(22_000), "₩22,000");
        assert_eq!(won(0), "₩0");
        assert_eq!(won(999), "₩999");
        assert_eq!(won(1_000), "₩1,000");
        assert_eq!(won(1_234_567), "₩1,234,567");
        assert_eq!(won(-5_000), "-₩5,000");
        assert_eq!(won(i64::MIN), "-₩9,223,372,036,854,775,808");
    }

    #[test]
    fn times_are_shown_in_korea_time() {
        assert_eq!(
            kst_of("2026-12-01T01:00:00.000Z"),
            "2026-12-01 10:00:00 KST"
        );
        // Past midnight in Seoul while it is still the day before in UTC.
        assert_eq!(kst_of("2026-12-31T15:30:05Z"), "2027-01-01 00:30:05 KST");
        assert_eq!(
            kst_of("2026-12-01T10:00:00+09:00"),
            "2026-12-01 10:00:00 KST"
        );
        assert_eq!(kst_of("not a time"), "not a time");
        assert_eq!(kst_ms(0), "1970-01-01 09:00:00 KST");
        assert_eq!(kst_minute(0), "09:00");
        assert!(when("2026-12-01T01:00:00Z").contains("datetime=\"2026-12-01T01:00:00Z\""));
    }

    #[test]
    fn typed_times_are_korea_time_unless_they_say_otherwise() {
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
        assert_eq!(
            parse_kst_input("2026-12-01T10:00"),
            Some(utc("2026-12-01T01:00:00Z"))
        );
        assert_eq!(
            parse_kst_input("2026-12-01 10:00:30"),
            Some(utc("2026-12-01T01:00:30Z"))
        );
        assert_eq!(
            parse_kst_input("2026-12-01T10:00:00Z"),
            Some(utc("2026-12-01T10:00:00Z"))
        );
        assert_eq!(parse_kst_input("yesterday"), None);
    }

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(enc("cancel:rf_1 &x=/"), "cancel%3Arf_1%20%26x%3D%2F");
    }

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(duration(0), "0 s");
        assert_eq!(duration(45_000), "45 s");
        assert_eq!(duration(600_000), "10 min");
        assert_eq!(duration(3 * 3_600_000), "3 h");
        assert_eq!(duration(3 * 3_600_000 + 300_000), "3 h 5 min");
    }
}
