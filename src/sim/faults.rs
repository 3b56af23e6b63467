//! Fault injection: rules set through the simulator's admin route that make the next N calls
//! (or a share of calls) of an endpoint fail in a chosen way. *Commit-then-fail* applies the
//! action and then fails the answer: the fault that catches double approvals and refunds.

use crate::kakaopay::Endpoint;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A rule as the admin route takes it:
/// `{"endpoint": "approve", "fault": "commit_then_fail", "then": "timeout", "count": 1}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `ready`, `approve`, `cancel`, `order`, or `*` for every endpoint.
    #[serde(default = "any")]
    pub endpoint: String,
    pub fault: FaultKind,
    /// Fire on this many matching calls, then disappear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Fire on this share of matching calls (0.0 to 1.0); with `count`, until it runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// `error`: KakaoPay's error code and what goes with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method_result_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method_result_message: Option<String>,
    /// `latency`: the delay; `commit_then_fail` with `then: timeout`: how long to hold the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// `commit_then_fail`: how the answer fails after the action was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<AfterCommit>,
}

fn any() -> String {
    "*".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Error,
    Http500,
    Latency,
    Drop,
    CommitThenFail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterCommit {
    #[serde(rename = "500")]
    Http500,
    Timeout,
    Drop,
}

/// What happens to one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer a KakaoPay error without applying anything.
    Error {
        code: i64,
        http_status: u16,
        message: String,
        method_result_code: Option<String>,
        method_result_message: Option<String>,
    },
    /// HTTP 500 without a KakaoPay body, nothing applied.
    Http500,
    /// Wait before handling. A client that gives up first leaves nothing applied.
    Latency { ms: u64 },
    /// Close the connection without an answer, nothing applied.
    Drop,
    /// Apply the call, then fail the answer; `ms` is how long a `timeout` holds it.
    CommitThenFail { then: AfterCommit, ms: u64 },
}

/// Long enough that any sane client timeout fires first.
const HOLD_MS: u64 = 30_000;

impl FaultRule {
    /// The fault this rule injects, or why the rule makes no sense.
    pub fn fault(&self) -> Result<Fault, String> {
        let known = self.endpoint == "*" || Endpoint::ALL.iter().any(|e| e.name() == self.endpoint);
        if !known {
            return Err(format!(
                "endpoint must be ready, approve, cancel, order or *; got {:?}",
                self.endpoint
            ));
        }
        if let Some(rate) = self.rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("rate must be 0.0 to 1.0, got {rate}"));
            }
        }
        if self.count == Some(0) {
            return Err("count must be at least 1".into());
        }
        let error_only = self.code.is_some()
            || self.http_status.is_some()
            || self.message.is_some()
            || self.method_result_code.is_some()
            || self.method_result_message.is_some();
        if error_only && self.fault != FaultKind::Error {
            return Err(
                "code, http_status, message and method_result_* belong to fault error".into(),
            );
        }
        if self.then.is_some() && self.fault != FaultKind::CommitThenFail {
            return Err("then belongs to fault commit_then_fail".into());
        }
        if self.ms.is_some()
            && !matches!(self.fault, FaultKind::Latency | FaultKind::CommitThenFail)
        {
            return Err("ms belongs to faults latency and commit_then_fail".into());
        }
        Ok(match self.fault {
            FaultKind::Error => {
                let http_status = self.http_status.unwrap_or(400);
                if !(400..=599).contains(&http_status) {
                    return Err("http_status must be 400 to 599".into());
                }
                Fault::Error {
                    code: self.code.ok_or("fault error needs a code")?,
                    http_status,
                    message: self
                        .message
                        .clone()
                        .unwrap_or_else(|| "injected failure".into()),
                    method_result_code: self.method_result_code.clone(),
                    method_result_message: self.method_result_message.clone(),
                }
            }
            FaultKind::Http500 => Fault::Http500,
            FaultKind::Latency => Fault::Latency {
                ms: self.ms.ok_or("fault latency needs ms")?,
            },
            FaultKind::Drop => Fault::Drop,
            FaultKind::CommitThenFail => Fault::CommitThenFail {
                then: self
                    .then
                    .ok_or("fault commit_then_fail needs then: 500, timeout or drop")?,
                ms: self.ms.unwrap_or(HOLD_MS),
            },
        })
    }

    fn matches(&self, endpoint: Endpoint) -> bool {
        self.endpoint == "*" || self.endpoint == endpoint.name()
    }
}

#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<(FaultRule, Fault)>,
}

impl Faults {
    pub fn add(&mut self, rule: FaultRule) -> Result<(), String> {
        let fault = rule.fault()?;
        self.rules.push((rule, fault));
        Ok(())
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn list(&self) -> Vec<&FaultRule> {
        self.rules.iter().map(|(rule, _)| rule).collect()
    }

    /// The fault for this call, if one fires; used-up rules are dropped.
    pub fn pick(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let mut rng = rand::rng();
        let idx = self.rules.iter().position(|(r, _)| {
            r.matches(endpoint) && r.rate.is_none_or(|rate| rng.random_bool(rate))
        })?;
        let (rule, fault) = &mut self.rules[idx];
        let fault = fault.clone();
        if let Some(n) = rule.count.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.rules.remove(idx);
            }
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> FaultRule {
        let r: FaultRule = serde_json::from_str(json).unwrap();
        r.fault().unwrap();
        r
    }

    #[test]
    fn count_limited_rules_fire_then_vanish() {
        let mut f = Faults::default();
        f.add(rule(
            r#"{"endpoint":"approve","fault":"http500","count":2}"#,
        ))
        .unwrap();
        assert_eq!(f.pick(Endpoint::Cancel), None);
        assert_eq!(f.pick(Endpoint::Approve), Some(Fault::Http500));
        assert_eq!(f.pick(Endpoint::Approve), Some(Fault::Http500));
        assert_eq!(f.pick(Endpoint::Approve), None);
        assert!(f.list().is_empty());
    }

    #[test]
    fn parses_every_fault_kind() {
        rule(r#"{"fault":"error","code":-780,"method_result_code":"USER_LOCKED"}"#);
        rule(r#"{"endpoint":"cancel","fault":"commit_then_fail","then":"500"}"#);
        rule(r#"{"endpoint":"cancel","fault":"commit_then_fail","then":"timeout","ms":2000}"#);
        rule(r#"{"endpoint":"order","fault":"drop","rate":0.5}"#);
        rule(r#"{"fault":"latency","ms":100}"#);
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            r#"{"fault":"explode"}"#,
            r#"{"fault":"http500","surprise":1}"#,
            r#"{"fault":"commit_then_fail","then":"later"}"#,
            r#"{"fault":"drop","rate":"often"}"#,
        ] {
            assert!(serde_json::from_str::<FaultRule>(bad).is_err(), "{bad}");
        }
        for bad in [
            r#"{"endpoint":"refund","fault":"http500"}"#,
            r#"{"fault":"http500","rate":1.5}"#,
            r#"{"fault":"http500","count":0}"#,
            r#"{"fault":"error","code":-1,"http_status":200}"#,
            r#"{"fault":"error"}"#,
            r#"{"fault":"http500","code":-780}"#,
            r#"{"fault":"drop","then":"500"}"#,
            r#"{"fault":"latency"}"#,
            r#"{"fault":"commit_then_fail"}"#,
        ] {
            let r: FaultRule = serde_json::from_str(bad).unwrap();
            assert!(r.fault().is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_zero_never_fires_rate_one_always() {
        let mut f = Faults::default();
        f.add(rule(r#"{"fault":"http500","rate":0.0}"#)).unwrap();
        assert!((0..100).all(|_| f.pick(Endpoint::Ready).is_none()));
        f.clear();
        f.add(rule(r#"{"fault":"http500","rate":1.0}"#)).unwrap();
        assert!((0..100).all(|_| f.pick(Endpoint::Ready).is_some()));
    }
}
