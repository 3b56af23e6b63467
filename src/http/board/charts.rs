//! Per-minute charts of a queue, drawn here as inline SVG (no script, no image from anywhere):
//! jobs done, failed attempts, and the oldest pending job's age, from the counters the queue
//! keeps in Redis (`kakaopay_jobs::queue::stats`).
//!
//! One bar a minute; the y axis starts at 0 and ends at a round number, with its middle
//! marked; the x axis is labelled in Korea time at round minutes. Each bar carries its minute
//! and value (`data-minute`, `data-value`) and a tooltip, so a person can hover and a test can
//! read what was drawn.

use super::pages::{duration, kst_minute};
use crate::html::escape;
use kakaopay_jobs::queue::stats::Minute;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 24.0;

/// What one chart shows.
struct Series<'a> {
    /// `done`, `failed`, `oldest`: its `data-series` and the bars' class.
    name: &'a str,
    title: String,
    /// Each minute's value; `None` where nothing was measured.
    values: Vec<(u64, Option<u64>)>,
    /// How a value reads (counts as they are, ages as durations).
    label: fn(u64) -> String,
    /// The tooltip's word after the value ("done", "failed", "oldest pending").
    noun: &'a str,
}

/// The three charts of a queue over `minutes` (oldest first).
pub fn queue_charts(minutes: &[Minute]) -> String {
    let hours = (minutes.len() as f64 / 60.0).round() as u64;
    let span = format!("last {} h, per minute, KST", hours.max(1));
    let done = Series {
        name: "done",
        title: format!("Jobs done ({span})"),
        values: minutes.iter().map(|m| (m.minute, Some(m.done))).collect(),
        label: count,
        noun: "done",
    };
    let failed = Series {
        name: "failed",
        title: format!("Failed attempts ({span})"),
        values: minutes.iter().map(|m| (m.minute, Some(m.failed))).collect(),
        label: count,
        noun: "failed",
    };
    let oldest = Series {
        name: "oldest",
        title: format!("Oldest pending job's age ({span}; the longest sampled)"),
        values: minutes
            .iter()
            .map(|m| (m.minute, m.oldest_pending_ms))
            .collect(),
        label: duration,
        noun: "oldest pending",
    };
    [done, failed, oldest].iter().map(chart).collect()
}

fn count(v: u64) -> String {
    v.to_string()
}

/// A round top for the y axis: 1, 2 or 5 times a power of ten, at least `max`.
fn nice_ceiling(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if step.saturating_mul(m) >= max {
                return step.saturating_mul(m).max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// Minutes between x labels: round ones, at most about eight labels.
fn label_step(minutes: usize) -> u64 {
    [5, 10, 15, 30, 60, 120, 180, 240, 360]
        .into_iter()
        .find(|s| minutes as u64 / s <= 8)
        .unwrap_or(360)
}

fn chart(s: &Series) -> String {
    let n = s.values.len().max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let top_value = nice_ceiling(s.values.iter().filter_map(|v| v.1).max().unwrap_or(0));
    let bar_w = plot_w / n;
    let y_of = |v: u64| TOP + plot_h - plot_h * (v as f64 / top_value as f64);
    let mut svg = format!(
        "<svg class=\"chart\" data-series=\"{name}\" role=\"img\" aria-label=\"{title}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text class=\"title\" x=\"{LEFT}\" y=\"15\">{title}</text>",
        name = escape(s.name),
        title = escape(&s.title),
    );
    // The y axis: 0, the middle (when it is a whole number), the top, with grid lines.
    let middle = top_value.is_multiple_of(2).then_some(top_value / 2);
    for v in [Some(0), middle, Some(top_value)].into_iter().flatten() {
        let y = y_of(v);
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&(s.label)(v)),
        ));
    }
    // The x axis, labelled at round minutes of Korea time (UTC+9 is a whole number of hours,
    // so round minutes are round in both).
    let step = label_step(s.values.len());
    for (i, (minute, _)) in s.values.iter().enumerate() {
        if minute.is_multiple_of(step) {
            let x = LEFT + bar_w * (i as f64 + 0.5);
            svg.push_str(&format!(
                "<line class=\"axis\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{b:.1}\" y2=\"{:.1}\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                TOP + plot_h + 4.0,
                HEIGHT - 6.0,
                kst_minute(*minute),
                b = TOP + plot_h,
            ));
        }
    }
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{b:.1}\" y2=\"{b:.1}\"/>",
        WIDTH - RIGHT,
        b = TOP + plot_h,
    ));
    svg.push_str(&bars(s, bar_w, &y_of));
    svg.push_str("</svg>");
    svg.push_str(&summary(s));
    svg
}

/// A bar for every minute with a value above 0 (a zero is the axis itself).
fn bars(s: &Series, bar_w: f64, y_of: &dyn Fn(u64) -> f64) -> String {
    let base = TOP + (HEIGHT - TOP - BOTTOM);
    let mut out = String::new();
    for (i, (minute, value)) in s.values.iter().enumerate() {
        let Some(v) = value.filter(|v| *v > 0) else {
            continue;
        };
        let y = y_of(v);
        out.push_str(&format!(
            "<rect class=\"bar-{name}\" data-minute=\"{minute}\" data-value=\"{v}\" x=\"{:.2}\" y=\"{y:.2}\" \
             width=\"{:.2}\" height=\"{:.2}\"><title>{} KST: {} {}</title></rect>",
            LEFT + bar_w * i as f64,
            (bar_w - 0.5).max(0.5),
            (base - y).max(0.5),
            kst_minute(*minute),
            escape(&(s.label)(v)),
            escape(s.noun),
            name = escape(s.name),
        ));
    }
    out
}

/// One line under a chart: the window's total, or for ages the longest and the latest.
fn summary(s: &Series) -> String {
    let text = if s.name == "oldest" {
        let longest = s.values.iter().filter_map(|v| v.1).max();
        let latest = s.values.iter().rev().find_map(|v| v.1);
        match (longest, latest) {
            (Some(l), Some(now)) => format!(
                "Longest wait in the window: {}; latest sample: {}.",
                duration(l),
                duration(now)
            ),
            _ => "No process sampled this queue in the window.".to_string(),
        }
    } else {
        let total: u64 = s.values.iter().filter_map(|v| v.1).sum();
        format!("{total} {} in the window.", s.noun)
    };
    format!(
        "<p class=\"chart-total\" data-series=\"{}\">{}</p>",
        escape(s.name),
        escape(&text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_y_axis_ends_at_a_round_number() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(4_100), 5_000);
    }

    #[test]
    fn bars_carry_their_minute_and_value() {
        let minutes: Vec<Minute> = (0..180)
            .map(|i| Minute {
                minute: 29_000_000 + i,
                done: if i == 179 { 7 } else { 0 },
                failed: if i == 100 { 2 } else { 0 },
                oldest_pending_ms: (i > 170).then_some(90_000),
            })
            .collect();
        let svg = queue_charts(&minutes);
        assert!(svg.contains("data-series=\"done\""));
        assert!(svg.contains("data-minute=\"29000179\" data-value=\"7\""));
        assert!(svg.contains("data-minute=\"29000100\" data-value=\"2\""));
        assert!(svg.contains("7 done in the window."));
        assert!(svg.contains("Longest wait in the window: 90 s"));
        assert!(svg.contains(" KST</text>") || svg.contains("KST)"));
        // Labels every 30 minutes over three hours.
        assert_eq!(label_step(180), 30);
    }
}
