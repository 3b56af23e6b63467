//! The automatic refund rules of REFUNDS.md: a pure function from the payment, the location's
//! integration, the payment's own policy and the request to an outcome, an amount, its
//! tax-free part and the rule that decided. No I/O, so every row is a unit test.

use crate::domain::{PaymentStatus, PolicyRule, RefundPolicy, Service, Tier, Won};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use kakaopay_jobs::Requester;

/// What the payment contributes to the decision.
#[derive(Debug, Clone)]
pub struct PaymentFacts<'a> {
    pub service: Service,
    pub starts_at: Option<DateTime<FixedOffset>>,
    /// What KakaoPay approved.
    pub approved: Won,
    pub approved_tax_free: Won,
    /// The VAT KakaoPay approved, when the booking system gave an explicit `vat_amount`: then
    /// every refund states its share of it (`cancel_vat_amount`).
    pub approved_vat: Option<Won>,
    /// Refunded so far, and its tax-free and VAT parts.
    pub refunded: Won,
    pub refunded_tax_free: Won,
    pub refunded_vat: Won,
    /// The resource's policy at purchase time, if the booking system gave one.
    pub policy: Option<&'a RefundPolicy>,
}

/// The location's integration; `None` when it is disconnected.
#[derive(Debug, Clone)]
pub struct IntegrationFacts<'a> {
    pub automatic_refunds: bool,
    pub refund_policy: &'a BTreeMap<Service, RefundPolicy>,
}

#[derive(Debug, Clone)]
pub struct RefundAsk<'a> {
    pub requested_by: Requester,
    pub reason: &'a str,
    pub canceled_at: DateTime<FixedOffset>,
    pub context: &'a serde_json::Map<String, serde_json::Value>,
    /// An operator's explicit amount (only accepted with an admin token).
    pub amount: Option<Won>,
    pub by_admin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Refund,
    Rejected,
    ManualReview,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub amount: Won,
    pub tax_free: Won,
    /// Sent as `cancel_vat_amount` when the payment had an explicit VAT.
    pub vat: Option<Won>,
    pub rule: String,
}

impl Decision {
    fn without_money(outcome: Outcome, rule: &str) -> Decision {
        Decision {
            outcome,
            amount: Won::ZERO,
            tax_free: Won::ZERO,
            vat: None,
            rule: rule.to_string(),
        }
    }
}

fn rejected(rule: &str) -> Decision {
    Decision::without_money(Outcome::Rejected, rule)
}

fn review(rule: &str) -> Decision {
    Decision::without_money(Outcome::ManualReview, rule)
}

/// Why a payment takes no refund, or not the one asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRefundable {
    /// In a status that takes no refund (never approved, refunded, canceled…).
    Status(PaymentStatus),
    /// Refundable by its status, but without an approval recorded.
    NeverApproved,
    /// An explicit amount over what is left (this much, perhaps nothing).
    OverRemaining(Won),
}

/// Whether a payment can take a refund (of `explicit` won, or the rules' amount): the one
/// check, made by the HTTP route before a request is stored and by the worker again under the
/// payment's refund lock (another refund may have been paid in between). Answers what is left,
/// which may be nothing: the route refuses that, the worker leaves it to the rules.
pub fn refundable(
    status: PaymentStatus,
    approved: Option<i64>,
    refunded: i64,
    explicit: Option<i64>,
) -> Result<Won, NotRefundable> {
    if !status.is_refundable() {
        return Err(NotRefundable::Status(status));
    }
    let approved = approved.ok_or(NotRefundable::NeverApproved)?;
    let left = Won::new(approved - refunded).unwrap_or(Won::ZERO);
    match explicit {
        Some(amount) if amount > left.get() => Err(NotRefundable::OverRemaining(left)),
        _ => Ok(left),
    }
}

/// What is left to refund.
pub fn remaining(p: &PaymentFacts) -> Won {
    p.approved.checked_sub(p.refunded).unwrap_or(Won::ZERO)
}

/// `a − b`, never below zero.
fn less(a: Won, b: Won) -> Won {
    a.checked_sub(b).unwrap_or(Won::ZERO)
}

/// A part's proportional share of `amount`: `floor(amount × part ÷ whole)`, clamped so that
/// neither the part nor the rest of the whole gives more than it has left, and all of what is
/// left of the part when `amount` empties the whole. Exact sums to the won, whatever the
/// sequence of refunds (REFUNDS.md, "Amounts").
fn share(amount: Won, part: Won, whole: Won, part_left: Won, whole_left: Won) -> Won {
    if amount >= whole_left {
        return part_left;
    }
    if whole == Won::ZERO {
        return Won::ZERO;
    }
    let rest_left = less(whole_left, part_left);
    let floor = less(amount, rest_left);
    let ceiling = amount.min(part_left);
    let proportional = (amount.get() as i128 * part.get() as i128) / whole.get() as i128;
    Won::new(proportional as i64)
        .unwrap_or(Won::ZERO)
        .max(floor)
        .min(ceiling)
}

/// The tax-free share of refunding `amount`.
pub fn tax_free_share(p: &PaymentFacts, amount: Won) -> Won {
    share(
        amount,
        p.approved_tax_free,
        p.approved,
        less(p.approved_tax_free, p.refunded_tax_free),
        remaining(p),
    )
}

/// The VAT share of refunding `amount` with `tax_free` of it tax-free: a share of the taxable
/// part, `None` when the payment had no explicit VAT (KakaoPay then computes it).
pub fn vat_share(p: &PaymentFacts, amount: Won, tax_free: Won) -> Option<Won> {
    let vat = p.approved_vat?;
    let taxable = less(p.approved, p.approved_tax_free);
    let taxable_left = less(remaining(p), less(p.approved_tax_free, p.refunded_tax_free));
    Some(share(
        less(amount, tax_free),
        vat,
        taxable,
        less(vat, p.refunded_vat),
        taxable_left,
    ))
}

fn refund(p: &PaymentFacts, amount: Won, rule: impl Into<String>) -> Decision {
    let amount = amount.min(remaining(p));
    if amount == Won::ZERO {
        return rejected("nothing_left");
    }
    let tax_free = tax_free_share(p, amount);
    Decision {
        outcome: Outcome::Refund,
        vat: vat_share(p, amount, tax_free),
        tax_free,
        amount,
        rule: rule.into(),
    }
}

/// Where a policy comes from: the payment's own, then the location's for the service, then
/// REFUNDS.md's defaults (`None` for invoices, which are never automatic).
pub fn policy_for(p: &PaymentFacts, i: &IntegrationFacts) -> Option<RefundPolicy> {
    if let Some(own) = p.policy {
        return Some(own.clone());
    }
    if let Some(location) = i.refund_policy.get(&p.service) {
        return Some(location.clone());
    }
    match p.service {
        Service::Bookings | Service::EventTickets => {
            Some(RefundPolicy::new(PolicyRule::MinNotice {
                notice_minutes: 1440,
            }))
        }
        Service::ShopProducts => Some(RefundPolicy::new(PolicyRule::UntilFulfilled)),
        Service::CreditPackages => Some(RefundPolicy::new(PolicyRule::NoRefund)),
        Service::Invoices => None,
    }
}

/// Minutes of notice the cancellation gave, or None without a start.
fn notice_minutes(p: &PaymentFacts, ask: &RefundAsk) -> Option<i64> {
    p.starts_at
        .map(|start| (start - ask.canceled_at).num_seconds().div_euclid(60))
}

fn fulfilled(ask: &RefundAsk) -> Option<bool> {
    ask.context
        .get("fulfilled")
        .and_then(serde_json::Value::as_bool)
}

/// An operator's approval of a refund left to a person: executed as an admin amount (the
/// amount approved, or what is left), the rules bypassed, rule `admin_review`.
pub fn reviewed(p: &PaymentFacts, amount: Option<Won>) -> Decision {
    refund(p, amount.unwrap_or_else(|| remaining(p)), "admin_review")
}

/// REFUNDS.md's decision order, first match wins.
pub fn decide(
    p: &PaymentFacts,
    integration: Option<&IntegrationFacts>,
    ask: &RefundAsk,
) -> Decision {
    let Some(i) = integration else {
        return review("integration_disconnected");
    };
    if let (true, Some(amount)) = (ask.by_admin, ask.amount) {
        return refund(p, amount, "admin_amount");
    }
    if !i.automatic_refunds {
        return review("automatic_refunds_off");
    }
    let by_admin = ask.requested_by == Requester::Admin;
    match p.service {
        Service::Invoices => return review("invoice_credit_note"),
        Service::CreditPackages if by_admin => return review("credit_package_admin_review"),
        Service::CreditPackages => return rejected("credit_package_non_refundable"),
        _ => {}
    }
    let Some(policy) = policy_for(p, i) else {
        return review("invoice_credit_note");
    };
    if p.service == Service::EventTickets && ask.reason == "event_canceled" {
        return if policy.refund_on_event_cancel {
            refund(p, remaining(p), "event_canceled_by_organizer")
        } else {
            review("event_canceled_by_organizer")
        };
    }
    if p.service == Service::ShopProducts {
        if by_admin {
            return review("shop_order_admin_cancel");
        }
        match (&policy.rule, fulfilled(ask)) {
            (_, Some(true)) => return rejected("fulfilled"),
            (PolicyRule::UntilFulfilled, Some(false)) => {
                return refund(p, remaining(p), "not_fulfilled")
            }
            (PolicyRule::UntilFulfilled, None) => return review("missing_context"),
            _ => {}
        }
    }
    if matches!(p.service, Service::Bookings | Service::EventTickets) {
        match p.starts_at {
            Some(start) if ask.canceled_at >= start => return rejected("already_started"),
            Some(_) => {}
            None => return review("missing_context"),
        }
    }
    match &policy.rule {
        PolicyRule::NoRefund => rejected("policy_no_refund"),
        PolicyRule::BeforeStart => match p.starts_at {
            Some(start) if ask.canceled_at < start => refund(p, remaining(p), "before_start"),
            Some(_) => rejected("already_started"),
            None => review("missing_context"),
        },
        PolicyRule::MinNotice {
            notice_minutes: needed,
        } => match notice_minutes(p, ask) {
            Some(given) if given >= i64::from(*needed) => refund(p, remaining(p), "min_notice_met"),
            Some(_) => rejected("min_notice_missed"),
            None => review("missing_context"),
        },
        PolicyRule::Tiers(tiers) => match notice_minutes(p, ask) {
            Some(given) => tier_decision(p, tiers, given),
            None => review("missing_context"),
        },
        // Until-fulfilled outside shop products has nothing to measure.
        PolicyRule::UntilFulfilled => review("missing_context"),
    }
}

fn tier_decision(p: &PaymentFacts, tiers: &[Tier], given: i64) -> Decision {
    // Tiers are sorted largest notice first: the first met is the largest met.
    let percent = tiers
        .iter()
        .find(|t| given >= i64::from(t.notice_minutes))
        .map(|t| t.percent)
        .unwrap_or(0);
    let rule = format!("tier_{percent}");
    if percent == 0 {
        return rejected(&rule);
    }
    let left = remaining(p);
    let amount =
        Won::new((left.get() as i128 * i128::from(percent) / 100) as i64).unwrap_or(Won::ZERO);
    refund(p, amount, rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn won(v: i64) -> Won {
        Won::new(v).unwrap()
    }

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    const START: &str = "2026-06-10T10:00:00+09:00";

    #[test]
    fn what_can_be_refunded_is_checked_once_for_both_paths() {
        use NotRefundable::*;
        let approved = PaymentStatus::Approved;
        assert_eq!(refundable(approved, Some(30_000), 0, None), Ok(won(30_000)));
        assert_eq!(
            refundable(
                PaymentStatus::PartiallyRefunded,
                Some(30_000),
                10_000,
                Some(20_000)
            ),
            Ok(won(20_000))
        );
        for status in [
            PaymentStatus::Ready,
            PaymentStatus::Refunded,
            PaymentStatus::Canceled,
        ] {
            assert_eq!(
                refundable(status, Some(30_000), 0, None),
                Err(Status(status))
            );
        }
        assert_eq!(refundable(approved, None, 0, None), Err(NeverApproved));
        // Nothing left: the route refuses it, the worker lets the rules say.
        assert_eq!(
            refundable(approved, Some(30_000), 30_000, None),
            Ok(Won::ZERO)
        );
        assert_eq!(
            refundable(approved, Some(30_000), 31_000, Some(1)),
            Err(OverRemaining(Won::ZERO))
        );
        assert_eq!(
            refundable(approved, Some(30_000), 10_000, Some(20_001)),
            Err(OverRemaining(won(20_000)))
        );
    }

    fn payment(service: Service, policy: Option<&RefundPolicy>) -> PaymentFacts<'_> {
        PaymentFacts {
            service,
            starts_at: Some(t(START)),
            approved: won(30_000),
            approved_tax_free: won(0),
            approved_vat: None,
            refunded: won(0),
            refunded_tax_free: won(0),
            refunded_vat: won(0),
            policy,
        }
    }

    fn ask<'a>(at: &str, context: &'a serde_json::Map<String, serde_json::Value>) -> RefundAsk<'a> {
        RefundAsk {
            requested_by: Requester::Member,
            reason: "booking_canceled",
            canceled_at: t(at),
            context,
            amount: None,
            by_admin: false,
        }
    }

    fn policy(json: &str) -> RefundPolicy {
        serde_json::from_str(json).unwrap()
    }

    fn on() -> BTreeMap<Service, RefundPolicy> {
        BTreeMap::new()
    }

    fn auto(map: &BTreeMap<Service, RefundPolicy>) -> IntegrationFacts<'_> {
        IntegrationFacts {
            automatic_refunds: true,
            refund_policy: map,
        }
    }

    fn check(d: Decision, outcome: Outcome, amount: i64, rule: &str) {
        assert_eq!(
            (d.outcome, d.amount.get(), d.rule.as_str()),
            (outcome, amount, rule)
        );
    }

    #[test]
    fn vectors_1_to_5_bookings() {
        let ctx = serde_json::Map::new();
        let map = on();
        let min = policy(r#"{"rule":"min_notice","notice_minutes":1440}"#);
        // 1: exactly 24 h before is in time.
        check(
            decide(
                &payment(Service::Bookings, Some(&min)),
                Some(&auto(&map)),
                &ask("2026-06-09T10:00:00+09:00", &ctx),
            ),
            Outcome::Refund,
            30_000,
            "min_notice_met",
        );
        // 2: a minute late.
        check(
            decide(
                &payment(Service::Bookings, Some(&min)),
                Some(&auto(&map)),
                &ask("2026-06-09T10:01:00+09:00", &ctx),
            ),
            Outcome::Rejected,
            0,
            "min_notice_missed",
        );
        let before = policy(r#"{"rule":"before_start"}"#);
        // 3, 4: before start, and at the start.
        check(
            decide(
                &payment(Service::Bookings, Some(&before)),
                Some(&auto(&map)),
                &ask("2026-06-10T09:59:00+09:00", &ctx),
            ),
            Outcome::Refund,
            30_000,
            "before_start",
        );
        check(
            decide(
                &payment(Service::Bookings, Some(&before)),
                Some(&auto(&map)),
                &ask(START, &ctx),
            ),
            Outcome::Rejected,
            0,
            "already_started",
        );
        // 5: no refund, a week early.
        let none = policy(r#"{"rule":"no_refund"}"#);
        check(
            decide(
                &payment(Service::Bookings, Some(&none)),
                Some(&auto(&map)),
                &ask("2026-06-03T10:00:00+09:00", &ctx),
            ),
            Outcome::Rejected,
            0,
            "policy_no_refund",
        );
    }

    #[test]
    fn vector_6_automatic_refunds_off() {
        let ctx = serde_json::Map::new();
        let map = on();
        let off = IntegrationFacts {
            automatic_refunds: false,
            refund_policy: &map,
        };
        check(
            decide(
                &payment(Service::Bookings, None),
                Some(&off),
                &ask("2026-06-01T10:00:00+09:00", &ctx),
            ),
            Outcome::ManualReview,
            0,
            "automatic_refunds_off",
        );
    }

    #[test]
    fn vectors_7_and_8_tiers() {
        let ctx = serde_json::Map::new();
        let map = on();
        let tiers = policy(
            r#"{"rule":"tiers","tiers":[{"notice_minutes":2880,"percent":100},{"notice_minutes":1440,"percent":50}]}"#,
        );
        check(
            decide(
                &payment(Service::Bookings, Some(&tiers)),
                Some(&auto(&map)),
                &ask("2026-06-09T04:00:00+09:00", &ctx),
            ),
            Outcome::Refund,
            15_000,
            "tier_50",
        );
        check(
            decide(
                &payment(Service::Bookings, Some(&tiers)),
                Some(&auto(&map)),
                &ask("2026-06-10T08:00:00+09:00", &ctx),
            ),
            Outcome::Rejected,
            0,
            "tier_0",
        );
        check(
            decide(
                &payment(Service::Bookings, Some(&tiers)),
                Some(&auto(&map)),
                &ask("2026-06-08T10:00:00+09:00", &ctx),
            ),
            Outcome::Refund,
            30_000,
            "tier_100",
        );
    }

    #[test]
    fn vectors_9_and_10_event_tickets() {
        let ctx = serde_json::Map::new();
        let map = on();
        let min = policy(r#"{"rule":"min_notice","notice_minutes":1440}"#);
        check(
            decide(
                &payment(Service::EventTickets, Some(&min)),
                Some(&auto(&map)),
                &ask("2026-06-08T10:00:00+09:00", &ctx),
            ),
            Outcome::Refund,
            30_000,
            "min_notice_met",
        );
        let mut canceled = ask("2026-06-08T10:00:00+09:00", &ctx);
        canceled.reason = "event_canceled";
        check(
            decide(
                &payment(Service::EventTickets, None),
                Some(&auto(&map)),
                &canceled,
            ),
            Outcome::ManualReview,
            0,
            "event_canceled_by_organizer",
        );
        let refunding =
            policy(r#"{"rule":"min_notice","notice_minutes":1440,"refund_on_event_cancel":true}"#);
        check(
            decide(
                &payment(Service::EventTickets, Some(&refunding)),
                Some(&auto(&map)),
                &canceled,
            ),
            Outcome::Refund,
            30_000,
            "event_canceled_by_organizer",
        );
    }

    #[test]
    fn vectors_11_to_14_shop_credit_invoice() {
        let map = on();
        let unfulfilled: serde_json::Map<_, _> =
            [("fulfilled".to_string(), serde_json::json!(false))]
                .into_iter()
                .collect();
        let fulfilled_ctx: serde_json::Map<_, _> =
            [("fulfilled".to_string(), serde_json::json!(true))]
                .into_iter()
                .collect();
        let empty = serde_json::Map::new();
        let shop = PaymentFacts {
            starts_at: None,
            ..payment(Service::ShopProducts, None)
        };
        check(
            decide(&shop, Some(&auto(&map)), &ask(START, &unfulfilled)),
            Outcome::Refund,
            30_000,
            "not_fulfilled",
        );
        check(
            decide(&shop, Some(&auto(&map)), &ask(START, &fulfilled_ctx)),
            Outcome::Rejected,
            0,
            "fulfilled",
        );
        check(
            decide(&shop, Some(&auto(&map)), &ask(START, &empty)),
            Outcome::ManualReview,
            0,
            "missing_context",
        );
        let mut admin = ask(START, &unfulfilled);
        admin.requested_by = Requester::Admin;
        check(
            decide(&shop, Some(&auto(&map)), &admin),
            Outcome::ManualReview,
            0,
            "shop_order_admin_cancel",
        );
        check(
            decide(
                &payment(Service::CreditPackages, None),
                Some(&auto(&map)),
                &ask(START, &empty),
            ),
            Outcome::Rejected,
            0,
            "credit_package_non_refundable",
        );
        check(
            decide(
                &payment(Service::CreditPackages, None),
                Some(&auto(&map)),
                &admin,
            ),
            Outcome::ManualReview,
            0,
            "credit_package_admin_review",
        );
        check(
            decide(
                &payment(Service::Invoices, None),
                Some(&auto(&map)),
                &ask(START, &empty),
            ),
            Outcome::ManualReview,
            0,
            "invoice_credit_note",
        );
    }

    #[test]
    fn vector_15_admin_amount_then_the_rest() {
        let ctx = serde_json::Map::new();
        let map = on();
        let mut first = ask("2026-06-01T10:00:00+09:00", &ctx);
        first.by_admin = true;
        first.amount = Some(won(10_000));
        let p = payment(Service::Bookings, None);
        check(
            decide(&p, Some(&auto(&map)), &first),
            Outcome::Refund,
            10_000,
            "admin_amount",
        );
        let after = PaymentFacts {
            refunded: won(10_000),
            ..p
        };
        check(
            decide(
                &after,
                Some(&auto(&map)),
                &ask("2026-06-01T10:00:00+09:00", &ctx),
            ),
            Outcome::Refund,
            20_000,
            "min_notice_met",
        );
    }

    #[test]
    fn vector_16_tax_free_parts_sum_exactly() {
        let p = PaymentFacts {
            approved: won(11_000),
            approved_tax_free: won(1_000),
            ..payment(Service::Bookings, None)
        };
        assert_eq!(tax_free_share(&p, won(3_333)), won(303));
        let after = PaymentFacts {
            refunded: won(3_333),
            refunded_tax_free: won(303),
            ..p
        };
        assert_eq!(tax_free_share(&after, won(7_667)), won(697));
    }

    /// Admin refunds of `amounts` in turn; answers each refund's tax-free part.
    fn tax_free_parts(total: i64, tax_free: i64, amounts: &[i64]) -> Vec<i64> {
        let ctx = serde_json::Map::new();
        let map = on();
        let (mut refunded, mut refunded_tf) = (0, 0);
        let mut parts = Vec::new();
        for &a in amounts {
            let p = PaymentFacts {
                approved: won(total),
                approved_tax_free: won(tax_free),
                refunded: won(refunded),
                refunded_tax_free: won(refunded_tf),
                ..payment(Service::Bookings, None)
            };
            let mut r = ask("2026-06-01T10:00:00+09:00", &ctx);
            r.by_admin = true;
            r.amount = Some(won(a));
            let d = decide(&p, Some(&auto(&map)), &r);
            assert_eq!(d.amount, won(a), "refund {a} of {total}");
            refunded += a;
            refunded_tf += d.tax_free.get();
            parts.push(d.tax_free.get());
        }
        parts
    }

    #[test]
    fn vector_19_no_taxable_won_left_for_the_second() {
        assert_eq!(tax_free_parts(3, 2, &[1, 1, 1]), vec![0, 1, 1]);
    }

    #[test]
    fn vector_20_small_refunds_on_a_mostly_tax_free_payment() {
        let mut amounts = vec![9; 11];
        amounts.push(9_901);
        let parts = tax_free_parts(10_000, 9_990, &amounts);
        let mut expected = vec![8; 10];
        expected.extend([9, 9_901]);
        assert_eq!(parts, expected);
        assert_eq!(parts.iter().sum::<i64>(), 9_990);
    }

    #[test]
    fn an_explicit_vat_is_shared_out_and_sums_exactly() {
        // 22,000 with 2,000 VAT: a third, then the rest.
        let p = PaymentFacts {
            approved: won(22_000),
            approved_vat: Some(won(2_000)),
            ..payment(Service::Bookings, None)
        };
        assert_eq!(vat_share(&p, won(5_500), Won::ZERO), Some(won(500)));
        let after = PaymentFacts {
            refunded: won(5_500),
            refunded_vat: won(500),
            ..p.clone()
        };
        assert_eq!(vat_share(&after, won(16_500), Won::ZERO), Some(won(1_500)));
        // Without an explicit VAT, KakaoPay computes it.
        let implicit = PaymentFacts {
            approved_vat: None,
            ..p
        };
        assert_eq!(vat_share(&implicit, won(5_500), Won::ZERO), None);
    }

    #[test]
    fn disconnected_and_nothing_left() {
        let ctx = serde_json::Map::new();
        let map = on();
        check(
            decide(&payment(Service::Bookings, None), None, &ask(START, &ctx)),
            Outcome::ManualReview,
            0,
            "integration_disconnected",
        );
        let spent = PaymentFacts {
            refunded: won(30_000),
            ..payment(Service::Bookings, None)
        };
        check(
            decide(
                &spent,
                Some(&auto(&map)),
                &ask("2026-06-01T10:00:00+09:00", &ctx),
            ),
            Outcome::Rejected,
            0,
            "nothing_left",
        );
    }

    #[test]
    fn the_location_policy_applies_when_the_payment_has_none() {
        let ctx = serde_json::Map::new();
        let mut map = on();
        map.insert(Service::Bookings, policy(r#"{"rule":"no_refund"}"#));
        check(
            decide(
                &payment(Service::Bookings, None),
                Some(&auto(&map)),
                &ask("2026-06-01T10:00:00+09:00", &ctx),
            ),
            Outcome::Rejected,
            0,
            "policy_no_refund",
        );
        let own = policy(r#"{"rule":"before_start"}"#);
        check(
            decide(
                &payment(Service::Bookings, Some(&own)),
                Some(&auto(&map)),
                &ask("2026-06-01T10:00:00+09:00", &ctx),
            ),
            Outcome::Refund,
            30_000,
            "before_start",
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Admin refunds of `asks` in turn, then one for the rest, with the invariants of
        /// REFUNDS.md's "Amounts" checked after each.
        fn check_sequence(
            total: i64,
            tax_free: i64,
            vat_pct: i64,
            asks: &[i64],
        ) -> Result<(), TestCaseError> {
            let vat = (total - tax_free) * vat_pct / 100 / 2;
            let ctx = serde_json::Map::new();
            let map = on();
            let (mut refunded, mut refunded_tf, mut refunded_vat) = (0i64, 0i64, 0i64);
            for a in asks.iter().copied().chain(std::iter::once(i64::MAX / 4)) {
                let p = PaymentFacts {
                    approved: won(total),
                    approved_tax_free: won(tax_free),
                    approved_vat: Some(won(vat)),
                    refunded: won(refunded),
                    refunded_tax_free: won(refunded_tf),
                    refunded_vat: won(refunded_vat),
                    ..payment(Service::Bookings, None)
                };
                let mut r = ask("2026-06-01T10:00:00+09:00", &ctx);
                r.by_admin = true;
                r.amount = Some(won(a));
                let d = decide(&p, Some(&auto(&map)), &r);
                if d.outcome == Outcome::Refund {
                    let d_vat = d.vat.expect("an explicit VAT is shared").get();
                    let taxable = d.amount.get() - d.tax_free.get();
                    prop_assert!(d.tax_free <= d.amount);
                    prop_assert!(d_vat <= taxable);
                    refunded += d.amount.get();
                    refunded_tf += d.tax_free.get();
                    refunded_vat += d_vat;
                }
                prop_assert!(refunded <= total);
                prop_assert!(refunded_tf <= tax_free);
                prop_assert!(
                    refunded - refunded_tf <= total - tax_free,
                    "taxable part overdrawn"
                );
                prop_assert!(refunded_vat <= vat);
                prop_assert!(
                    (refunded - refunded_tf) - refunded_vat <= (total - tax_free) - vat,
                    "supply part overdrawn"
                );
            }
            prop_assert_eq!(refunded, total);
            prop_assert_eq!(refunded_tf, tax_free);
            prop_assert_eq!(refunded_vat, vat);
            Ok(())
        }

        proptest! {
            /// Any sequence of refunds never exceeds what was approved, no refund cancels more
            /// of the tax-free, taxable or VAT part than is left, and emptying the payment
            /// returns exactly its tax-free part and its VAT.
            #[test]
            fn refunds_never_exceed_and_parts_sum_exactly(
                total in 1i64..10_000_000,
                tax_free_pct in 0i64..=100,
                vat_pct in 0i64..=100,
                asks in proptest::collection::vec(1i64..10_000_000, 1..20),
            ) {
                check_sequence(total, total * tax_free_pct / 100, vat_pct, &asks)?;
            }

            /// The edges of REFUNDS.md's vectors 19 and 20: many small refunds of a payment
            /// that is almost all tax-free (or almost all taxable).
            #[test]
            fn small_refunds_on_lopsided_payments(
                total in 1i64..20_000,
                taxable in 0i64..20,
                flip in any::<bool>(),
                vat_pct in 0i64..=100,
                asks in proptest::collection::vec(1i64..12, 1..40),
            ) {
                let taxable = taxable.min(total);
                let tax_free = if flip { taxable } else { total - taxable };
                check_sequence(total, tax_free, vat_pct, &asks)?;
            }

            /// On the notice edge is in time; a minute less is not.
            #[test]
            fn the_notice_edge_is_in_time(minutes in 0u32..100_000) {
                let ctx = serde_json::Map::new();
                let map = on();
                let min = RefundPolicy::new(PolicyRule::MinNotice { notice_minutes: minutes });
                let p = payment(Service::Bookings, Some(&min));
                let start = t(START);
                let at = |m: i64| (start - chrono::Duration::minutes(m)).to_rfc3339();
                let edge = at(i64::from(minutes));
                prop_assert_eq!(decide(&p, Some(&auto(&map)), &ask(&edge, &ctx)).rule, if minutes == 0 { "already_started" } else { "min_notice_met" });
                if minutes > 1 {
                    let late = at(i64::from(minutes) - 1);
                    prop_assert_eq!(decide(&p, Some(&auto(&map)), &ask(&late, &ctx)).rule, "min_notice_missed");
                }
            }
        }
    }
}
