//! Refund policies of REFUNDS.md, parsed from their JSON form once.

use super::Invalid;
use serde::{Deserialize, Serialize};

/// A resource's refund policy: the rule, and whether an organiser's cancellation of an event
/// refunds tickets in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPolicy", into = "RawPolicy")]
pub struct RefundPolicy {
    pub rule: PolicyRule,
    pub refund_on_event_cancel: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRule {
    BeforeStart,
    MinNotice {
        notice_minutes: u32,
    },
    /// Sorted by `notice_minutes`, largest first, no two alike.
    Tiers(Vec<Tier>),
    UntilFulfilled,
    NoRefund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub notice_minutes: u32,
    pub percent: u8,
}

/// Ten years of notice is more than any real policy asks; beyond it is a typo.
const MAX_NOTICE_MINUTES: u32 = 10 * 366 * 24 * 60;
const MAX_TIERS: usize = 20;

impl RefundPolicy {
    pub fn new(rule: PolicyRule) -> Self {
        Self {
            rule,
            refund_on_event_cancel: false,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notice_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tiers: Option<Vec<RawTier>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    refund_on_event_cancel: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    notice_minutes: i64,
    percent: i64,
}

fn notice(value: i64) -> Result<u32, Invalid> {
    u32::try_from(value)
        .ok()
        .filter(|&m| m <= MAX_NOTICE_MINUTES)
        .ok_or_else(|| {
            Invalid(format!(
                "notice_minutes must be 0 to {MAX_NOTICE_MINUTES}, got {value}"
            ))
        })
}

impl TryFrom<RawPolicy> for RefundPolicy {
    type Error = Invalid;

    fn try_from(raw: RawPolicy) -> Result<Self, Invalid> {
        let unexpected =
            |field: &str| Invalid(format!("{field} does not belong to rule {}", raw.rule));
        let rule = match raw.rule.as_str() {
            "min_notice" => {
                if raw.tiers.is_some() {
                    return Err(unexpected("tiers"));
                }
                let minutes = raw
                    .notice_minutes
                    .ok_or_else(|| Invalid("min_notice needs notice_minutes".into()))?;
                PolicyRule::MinNotice {
                    notice_minutes: notice(minutes)?,
                }
            }
            "tiers" => {
                if raw.notice_minutes.is_some() {
                    return Err(unexpected("notice_minutes"));
                }
                let raw_tiers = raw
                    .tiers
                    .as_ref()
                    .ok_or_else(|| Invalid("tiers needs a list of tiers".into()))?;
                if raw_tiers.is_empty() || raw_tiers.len() > MAX_TIERS {
                    return Err(Invalid(format!("tiers must hold 1 to {MAX_TIERS} tiers")));
                }
                let mut tiers = Vec::with_capacity(raw_tiers.len());
                for t in raw_tiers {
                    let percent = u8::try_from(t.percent)
                        .ok()
                        .filter(|&p| p <= 100)
                        .ok_or_else(|| {
                            Invalid(format!("percent must be 0 to 100, got {}", t.percent))
                        })?;
                    tiers.push(Tier {
                        notice_minutes: notice(t.notice_minutes)?,
                        percent,
                    });
                }
                tiers.sort_by_key(|t| std::cmp::Reverse(t.notice_minutes));
                if tiers
                    .windows(2)
                    .any(|w| w[0].notice_minutes == w[1].notice_minutes)
                {
                    return Err(Invalid("two tiers have the same notice_minutes".into()));
                }
                PolicyRule::Tiers(tiers)
            }
            simple => {
                if raw.notice_minutes.is_some() {
                    return Err(unexpected("notice_minutes"));
                }
                if raw.tiers.is_some() {
                    return Err(unexpected("tiers"));
                }
                match simple {
                    "before_start" => PolicyRule::BeforeStart,
                    "until_fulfilled" => PolicyRule::UntilFulfilled,
                    "no_refund" => PolicyRule::NoRefund,
                    other => {
                        return Err(Invalid(format!(
                            "rule must be one of before_start, min_notice, tiers, until_fulfilled, no_refund; got {other:?}"
                        )))
                    }
                }
            }
        };
        Ok(RefundPolicy {
            rule,
            refund_on_event_cancel: raw.refund_on_event_cancel,
        })
    }
}

impl From<RefundPolicy> for RawPolicy {
    fn from(p: RefundPolicy) -> Self {
        let (rule, notice_minutes, tiers) = match p.rule {
            PolicyRule::BeforeStart => ("before_start", None, None),
            PolicyRule::MinNotice { notice_minutes } => {
                ("min_notice", Some(notice_minutes.into()), None)
            }
            PolicyRule::Tiers(tiers) => (
                "tiers",
                None,
                Some(
                    tiers
                        .into_iter()
                        .map(|t| RawTier {
                            notice_minutes: t.notice_minutes.into(),
                            percent: t.percent.into(),
                        })
                        .collect(),
                ),
            ),
            PolicyRule::UntilFulfilled => ("until_fulfilled", None, None),
            PolicyRule::NoRefund => ("no_refund", None, None),
        };
        RawPolicy {
            rule: rule.to_string(),
            notice_minutes,
            tiers,
            refund_on_event_cancel: p.refund_on_event_cancel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RefundPolicy, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn every_policy_of_refunds_md_parses() {
        assert_eq!(
            parse(r#"{"rule":"before_start"}"#).unwrap().rule,
            PolicyRule::BeforeStart
        );
        assert_eq!(
            parse(r#"{"rule":"min_notice","notice_minutes":1440}"#)
                .unwrap()
                .rule,
            PolicyRule::MinNotice {
                notice_minutes: 1440
            }
        );
        assert_eq!(
            parse(r#"{"rule":"until_fulfilled"}"#).unwrap().rule,
            PolicyRule::UntilFulfilled
        );
        assert_eq!(
            parse(r#"{"rule":"no_refund"}"#).unwrap().rule,
            PolicyRule::NoRefund
        );
        let tiers = parse(
            r#"{"rule":"tiers","tiers":[{"notice_minutes":1440,"percent":50},{"notice_minutes":2880,"percent":100}]}"#,
        )
        .unwrap();
        // Stored largest notice first, whatever order they came in.
        assert_eq!(
            tiers.rule,
            PolicyRule::Tiers(vec![
                Tier {
                    notice_minutes: 2880,
                    percent: 100
                },
                Tier {
                    notice_minutes: 1440,
                    percent: 50
                }
            ])
        );
        let ev =
            parse(r#"{"rule":"min_notice","notice_minutes":60,"refund_on_event_cancel":true}"#)
                .unwrap();
        assert!(ev.refund_on_event_cancel);
    }

    #[test]
    fn round_trips_through_json() {
        for json in [
            r#"{"rule":"before_start"}"#,
            r#"{"rule":"min_notice","notice_minutes":1440,"refund_on_event_cancel":true}"#,
            r#"{"rule":"tiers","tiers":[{"notice_minutes":2880,"percent":100},{"notice_minutes":0,"percent":10}]}"#,
        ] {
            let p = parse(json).unwrap();
            assert_eq!(serde_json::to_string(&p).unwrap(), json);
        }
    }

    #[test]
    fn every_rejection() {
        for bad in [
            r#"{}"#,
            r#"{"rule":"sometimes"}"#,
            r#"{"rule":"min_notice"}"#,
            r#"{"rule":"min_notice","notice_minutes":-1}"#,
            r#"{"rule":"min_notice","notice_minutes":99999999}"#,
            r#"{"rule":"min_notice","notice_minutes":1.5}"#,
            r#"{"rule":"min_notice","notice_minutes":60,"tiers":[]}"#,
            r#"{"rule":"before_start","notice_minutes":60}"#,
            r#"{"rule":"no_refund","tiers":[{"notice_minutes":1,"percent":1}]}"#,
            r#"{"rule":"tiers"}"#,
            r#"{"rule":"tiers","tiers":[]}"#,
            r#"{"rule":"tiers","notice_minutes":5,"tiers":[{"notice_minutes":1,"percent":1}]}"#,
            r#"{"rule":"tiers","tiers":[{"notice_minutes":60,"percent":101}]}"#,
            r#"{"rule":"tiers","tiers":[{"notice_minutes":60,"percent":-1}]}"#,
            r#"{"rule":"tiers","tiers":[{"notice_minutes":60,"percent":50},{"notice_minutes":60,"percent":20}]}"#,
            r#"{"rule":"tiers","tiers":[{"notice_minutes":60,"percent":50,"extra":1}]}"#,
            r#"{"rule":"before_start","surprise":true}"#,
        ] {
            assert!(parse(bad).is_err(), "accepted {bad}");
        }
    }
}
