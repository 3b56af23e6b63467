//! Requests and responses of the four endpoints, field for field as KAKAOPAY.md lists them.
//!
//! Responses are read leniently: unknown fields are ignored, everything KakaoPay has been seen
//! to omit is optional, and numbers or strings are accepted where captures disagree on the type.
//! Requests are strict: they are built from domain types, so they are valid by construction.

use super::{status::OrderStatus, time::KstTime};
use crate::domain::{Cid, ItemName, OrderId, Payload, PgToken, Tid, UserId, Won};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadyRequest {
    pub cid: Cid,
    pub partner_order_id: OrderId,
    pub partner_user_id: UserId,
    pub item_name: ItemName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_code: Option<String>,
    pub quantity: u32,
    pub total_amount: Won,
    pub tax_free_amount: Won,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vat_amount: Option<Won>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub green_deposit: Option<Won>,
    pub approval_url: String,
    pub cancel_url: String,
    pub fail_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_cards: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_method_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_month: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_share_installment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_json: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApproveRequest {
    pub cid: Cid,
    pub tid: Tid,
    pub partner_order_id: OrderId,
    pub partner_user_id: UserId,
    pub pg_token: PgToken,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_amount: Option<Won>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CancelRequest {
    pub cid: Cid,
    pub tid: Tid,
    pub cancel_amount: Won,
    pub cancel_tax_free_amount: Won,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_vat_amount: Option<Won>,
    /// The remaining cancelable total *including* this cancel: KakaoPay refuses the cancel if
    /// its own remaining amount differs, which is what stops a raced or repeated refund.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_available_amount: Option<Won>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderRequest {
    pub cid: Cid,
    pub tid: Tid,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Amount {
    #[serde(default, deserialize_with = "lenient::int")]
    pub total: i64,
    #[serde(default, deserialize_with = "lenient::int")]
    pub tax_free: i64,
    #[serde(default, deserialize_with = "lenient::int")]
    pub vat: i64,
    #[serde(default, deserialize_with = "lenient::int")]
    pub point: i64,
    #[serde(default, deserialize_with = "lenient::int")]
    pub discount: i64,
    #[serde(default, deserialize_with = "lenient::int")]
    pub green_deposit: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyResponse {
    pub tid: String,
    #[serde(default)]
    pub next_redirect_app_url: Option<String>,
    #[serde(default)]
    pub next_redirect_mobile_url: Option<String>,
    #[serde(default)]
    pub next_redirect_pc_url: Option<String>,
    #[serde(default)]
    pub android_app_scheme: Option<String>,
    #[serde(default)]
    pub ios_app_scheme: Option<String>,
    #[serde(default)]
    pub created_at: Option<KstTime>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CardInfo {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub kakaopay_purchase_corp: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub kakaopay_purchase_corp_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub kakaopay_issuer_corp: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub kakaopay_issuer_corp_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub bin: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub card_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub install_month: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub approved_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub card_mid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub interest_free_install: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub installment_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub card_item_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub purchase_corp: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub purchase_corp_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub issuer_corp: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub issuer_corp_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApproveResponse {
    pub aid: String,
    pub tid: String,
    #[serde(default)]
    pub cid: Option<String>,
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub partner_order_id: Option<String>,
    #[serde(default)]
    pub partner_user_id: Option<String>,
    #[serde(default)]
    pub payment_method_type: Option<String>,
    #[serde(default)]
    pub amount: Amount,
    #[serde(default)]
    pub card_info: Option<CardInfo>,
    #[serde(default)]
    pub item_name: Option<String>,
    #[serde(default)]
    pub item_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub quantity: Option<i64>,
    #[serde(default)]
    pub created_at: Option<KstTime>,
    #[serde(default)]
    pub approved_at: Option<KstTime>,
    #[serde(default)]
    pub payload: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelResponse {
    pub aid: String,
    pub tid: String,
    #[serde(default)]
    pub cid: Option<String>,
    pub status: OrderStatus,
    #[serde(default)]
    pub partner_order_id: Option<String>,
    #[serde(default)]
    pub partner_user_id: Option<String>,
    #[serde(default)]
    pub payment_method_type: Option<String>,
    #[serde(default)]
    pub amount: Amount,
    #[serde(default)]
    pub approved_cancel_amount: Amount,
    #[serde(default)]
    pub canceled_amount: Amount,
    #[serde(default)]
    pub cancel_available_amount: Amount,
    #[serde(default)]
    pub item_name: Option<String>,
    #[serde(default)]
    pub item_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub quantity: Option<i64>,
    #[serde(default)]
    pub created_at: Option<KstTime>,
    #[serde(default)]
    pub approved_at: Option<KstTime>,
    #[serde(default)]
    pub canceled_at: Option<KstTime>,
    #[serde(default)]
    pub payload: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SelectedCardInfo {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub card_bin: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub install_month: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub card_corp_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub interest_free_install: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub installment_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ActionType {
    Payment,
    Cancel,
    IssuedSid,
    Other(String),
}

impl From<String> for ActionType {
    fn from(s: String) -> Self {
        match s.as_str() {
            "PAYMENT" => ActionType::Payment,
            "CANCEL" => ActionType::Cancel,
            "ISSUED_SID" => ActionType::IssuedSid,
            _ => ActionType::Other(s),
        }
    }
}

impl From<ActionType> for String {
    fn from(a: ActionType) -> String {
        match a {
            ActionType::Payment => "PAYMENT".into(),
            ActionType::Cancel => "CANCEL".into(),
            ActionType::IssuedSid => "ISSUED_SID".into(),
            ActionType::Other(s) => s,
        }
    }
}

/// One approve or cancel, as the order inquiry lists them. Only `aid` and the type are
/// reliably present (a captured test-mode answer had nothing else of note).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentAction {
    pub aid: String,
    pub payment_action_type: ActionType,
    #[serde(default)]
    pub approved_at: Option<KstTime>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub amount: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub point_amount: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub discount_amount: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub green_deposit: Option<i64>,
    #[serde(default)]
    pub payment_method_type: Option<String>,
    #[serde(default)]
    pub payload: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderResponse {
    pub tid: String,
    #[serde(default)]
    pub cid: Option<String>,
    pub status: OrderStatus,
    #[serde(default)]
    pub partner_order_id: Option<String>,
    #[serde(default)]
    pub partner_user_id: Option<String>,
    #[serde(default)]
    pub payment_method_type: Option<String>,
    #[serde(default)]
    pub amount: Option<Amount>,
    #[serde(default)]
    pub canceled_amount: Option<Amount>,
    #[serde(default)]
    pub cancel_available_amount: Option<Amount>,
    #[serde(default)]
    pub item_name: Option<String>,
    #[serde(default)]
    pub item_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub quantity: Option<i64>,
    #[serde(default)]
    pub created_at: Option<KstTime>,
    #[serde(default)]
    pub approved_at: Option<KstTime>,
    #[serde(default)]
    pub canceled_at: Option<KstTime>,
    #[serde(default)]
    pub selected_card_info: Option<SelectedCardInfo>,
    #[serde(default, deserialize_with = "lenient::list")]
    pub payment_action_details: Vec<PaymentAction>,
}

impl OrderResponse {
    /// The approval action, whose `aid` records a payment found approved by inquiry.
    pub fn payment_action(&self) -> Option<&PaymentAction> {
        self.payment_action_details
            .iter()
            .find(|a| a.payment_action_type == ActionType::Payment)
    }

    /// The cancel action carrying `payload`: proof that a refund already happened.
    pub fn cancel_with_payload(&self, payload: &str) -> Option<&PaymentAction> {
        self.cancels()
            .find(|a| a.payload.as_deref() == Some(payload))
    }

    fn cancels(&self) -> impl DoubleEndedIterator<Item = &PaymentAction> {
        self.payment_action_details
            .iter()
            .filter(|a| a.payment_action_type == ActionType::Cancel)
    }

    /// Everything canceled so far, from `canceled_amount` or else from what is left.
    pub fn canceled_total(&self) -> Option<i64> {
        match (
            &self.canceled_amount,
            &self.amount,
            &self.cancel_available_amount,
        ) {
            (Some(c), _, _) => Some(c.total),
            (None, Some(a), Some(left)) => Some(a.total - left.total),
            _ => None,
        }
    }

    /// Whether the cancel of `amount` sent with `payload` happened, when `canceled_before` had
    /// been canceled before it. A CANCEL action carrying the payload proves it. Otherwise the
    /// canceled amounts tell (KAKAOPAY.md §2: a real test-mode inquiry showed no payloads), and
    /// where the cancels do carry payloads, none of them ours, amounts that say "yes" are a
    /// contradiction left unclear, never read as "no".
    pub fn find_cancel(&self, payload: &str, amount: i64, canceled_before: i64) -> CancelFound {
        if let Some(a) = self.cancel_with_payload(payload) {
            return CancelFound::Applied(FoundCancel {
                aid: a.aid.clone(),
                amount: a.amount,
                by_amounts: false,
            });
        }
        let payloads_shown = self.cancels().any(|a| a.payload.is_some());
        match self.canceled_total() {
            Some(c) if c == canceled_before + amount && !payloads_shown => {
                let action = self
                    .cancels()
                    .rev()
                    .find(|a| a.amount == Some(amount))
                    .or_else(|| self.cancels().next_back());
                match action {
                    Some(a) => CancelFound::Applied(FoundCancel {
                        aid: a.aid.clone(),
                        amount: Some(amount),
                        by_amounts: true,
                    }),
                    None => CancelFound::Unclear(format!(
                        "KakaoPay shows {c} won canceled but lists no cancel"
                    )),
                }
            }
            Some(c) if c == canceled_before => CancelFound::NotApplied,
            Some(c) => CancelFound::Unclear(format!(
                "KakaoPay shows {c} won canceled; {canceled_before} had been before this refund of {amount}, and no cancel carries its payload"
            )),
            None if payloads_shown => CancelFound::NotApplied,
            None => CancelFound::Unclear(
                "the order inquiry shows neither payloads nor canceled amounts".into(),
            ),
        }
    }
}

/// A cancel the order inquiry shows: its action's `aid`, its amount where KakaoPay gives it,
/// and whether only the canceled amounts prove it (no payload to match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCancel {
    pub aid: String,
    pub amount: Option<i64>,
    pub by_amounts: bool,
}

/// What the order inquiry says of one cancel we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelFound {
    /// It happened.
    Applied(FoundCancel),
    NotApplied,
    /// Neither proven nor disproven (amounts that fit no story): never resend on this.
    Unclear(String),
}

/// Deserializers that accept what captured answers disagree on: numbers as strings and the
/// reverse, and `null` where a value is usually present.
mod lenient {
    use serde::{de::DeserializeOwned, Deserialize, Deserializer};
    use serde_json::Value;

    fn to_int(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(opt_int(d)?.unwrap_or(0))
    }

    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            v => to_int(&v)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {v}"))),
        }
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        })
    }

    pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inquiry after one approval of 22,000 (payload `pay_1`) and the cancels given as
    /// (aid, amount, payload), with `canceled` in all.
    fn order(cancels: &[(&str, i64, Option<&str>)], canceled: Option<i64>) -> OrderResponse {
        let mut actions = vec![
            serde_json::json!({"aid": "A_pay", "payment_action_type": "PAYMENT", "amount": 22000, "payload": "pay_1"}),
        ];
        for (aid, amount, payload) in cancels {
            actions.push(serde_json::json!({"aid": aid, "payment_action_type": "CANCEL", "amount": amount, "payload": payload}));
        }
        let mut o = serde_json::json!({
            "tid": "T1234567890123456789", "status": "PART_CANCEL_PAYMENT",
            "amount": {"total": 22000}, "payment_action_details": actions,
        });
        if let Some(c) = canceled {
            o["canceled_amount"] = serde_json::json!({"total": c});
        }
        serde_json::from_value(o).unwrap()
    }

    fn applied(aid: &str, amount: i64, by_amounts: bool) -> CancelFound {
        CancelFound::Applied(FoundCancel {
            aid: aid.into(),
            amount: Some(amount),
            by_amounts,
        })
    }

    #[test]
    fn a_cancel_with_our_payload_is_ours() {
        let o = order(&[("A_1", 5000, Some("rf_1"))], Some(5000));
        assert_eq!(o.find_cancel("rf_1", 5000, 0), applied("A_1", 5000, false));
        assert_eq!(o.find_cancel("rf_2", 3000, 5000), CancelFound::NotApplied);
    }

    #[test]
    fn without_payloads_the_amounts_tell() {
        let o = order(&[("A_1", 5000, None), ("A_2", 3000, None)], Some(8000));
        assert_eq!(
            o.find_cancel("rf_2", 3000, 5000),
            applied("A_2", 3000, true)
        );
        assert_eq!(o.find_cancel("rf_3", 1000, 8000), CancelFound::NotApplied);
        assert!(matches!(
            o.find_cancel("rf_3", 1000, 6000),
            CancelFound::Unclear(_)
        ));
        // Nothing to go by at all.
        let bare = order(&[("A_1", 5000, None)], None);
        assert!(matches!(
            bare.find_cancel("rf_1", 5000, 0),
            CancelFound::Unclear(_)
        ));
    }

    #[test]
    fn a_payload_on_the_approval_alone_does_not_make_an_unmarked_cancel_someone_elses() {
        // The approval shows its payload, the cancels none: the amounts still decide.
        let o = order(&[("A_1", 5000, None)], Some(5000));
        assert_eq!(o.find_cancel("rf_1", 5000, 0), applied("A_1", 5000, true));
    }

    #[test]
    fn amounts_that_contradict_the_payloads_are_unclear() {
        // Someone else's cancel of the same amount carries its own payload.
        let o = order(&[("A_1", 5000, Some("dashboard"))], Some(5000));
        assert!(matches!(
            o.find_cancel("rf_1", 5000, 0),
            CancelFound::Unclear(_)
        ));
        // Without amounts, payloads on the cancels are trusted.
        let o = order(&[("A_1", 5000, Some("rf_other"))], None);
        assert_eq!(o.find_cancel("rf_1", 5000, 0), CancelFound::NotApplied);
    }
}
