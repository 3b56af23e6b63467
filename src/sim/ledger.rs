//! KakaoPay's side of every payment: state per `tid` and the rules of KAKAOPAY.md §11.
//!
//! Pure state transitions over a map, no I/O: the HTTP layer parses, calls one of these under
//! a lock, and renders the answer. Error codes other than -780 and -401 are assumptions
//! (KAKAOPAY.md marks them [U]); they live in [`codes`] so they are easy to change.

use super::error::{codes, SimError};
use super::fields::Fields;
use crate::kakaopay::{KstTime, OrderStatus};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub total: i64,
    pub tax_free: i64,
    pub vat: i64,
    pub point: i64,
    pub discount: i64,
    pub green_deposit: i64,
}

impl Amounts {
    pub fn to_json(self) -> Value {
        json!({
            "total": self.total, "tax_free": self.tax_free, "vat": self.vat,
            "point": self.point, "discount": self.discount, "green_deposit": self.green_deposit,
        })
    }

    fn minus(self, o: Amounts) -> Amounts {
        Amounts {
            total: self.total - o.total,
            tax_free: self.tax_free - o.tax_free,
            vat: self.vat - o.vat,
            point: self.point - o.point,
            discount: self.discount - o.discount,
            green_deposit: self.green_deposit - o.green_deposit,
        }
    }

    fn plus(self, o: Amounts) -> Amounts {
        Amounts {
            total: self.total + o.total,
            tax_free: self.tax_free + o.tax_free,
            vat: self.vat + o.vat,
            point: self.point + o.point,
            discount: self.discount + o.discount,
            green_deposit: self.green_deposit + o.green_deposit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Action {
    pub aid: String,
    pub kind: &'static str,
    pub at: KstTime,
    pub amount: i64,
    pub payload: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SimPayment {
    pub tid: String,
    pub cid: String,
    pub partner_order_id: String,
    pub partner_user_id: String,
    pub item_name: String,
    pub item_code: Option<String>,
    pub quantity: i64,
    pub amount: Amounts,
    pub canceled: Amounts,
    pub approval_url: String,
    pub cancel_url: String,
    pub fail_url: String,
    pub status: OrderStatus,
    pub created_at: KstTime,
    pub approved_at: Option<KstTime>,
    pub canceled_at: Option<KstTime>,
    pub payment_method_type: Option<String>,
    pub pg_token: Option<String>,
    pub actions: Vec<Action>,
}

impl SimPayment {
    fn remaining(&self) -> Amounts {
        self.amount.minus(self.canceled)
    }

    fn is_paid(&self) -> bool {
        matches!(
            self.status,
            OrderStatus::SuccessPayment | OrderStatus::PartCancelPayment
        )
    }

    /// The ledger row the `/__sim/ledger` route shows.
    pub fn ledger_json(&self) -> Value {
        json!({
            "tid": self.tid, "cid": self.cid, "status": self.status.as_str(),
            "partner_order_id": self.partner_order_id, "partner_user_id": self.partner_user_id,
            "item_name": self.item_name,
            "amount": self.amount.to_json(), "canceled_amount": self.canceled.to_json(),
            "cancel_available_amount": self.remaining().to_json(),
            "created_at": self.created_at, "approved_at": self.approved_at, "canceled_at": self.canceled_at,
            "actions": self.actions.iter().map(|a| action_json(a, self.payment_method_type.as_deref())).collect::<Vec<_>>(),
        })
    }
}

fn action_json(a: &Action, method: Option<&str>) -> Value {
    json!({
        "aid": a.aid, "approved_at": a.at, "amount": a.amount, "point_amount": 0,
        "discount_amount": 0, "green_deposit": 0, "payment_method_type": method.unwrap_or("CARD"),
        "payment_action_type": a.kind, "payload": a.payload,
    })
}

/// Assumptions KAKAOPAY.md leaves open, made configurable.
#[derive(Debug, Clone)]
pub struct Rules {
    /// How long after ready a payment can still be authorised and approved.
    pub ready_window: Duration,
    /// What an un-approved payment turns into once its window has passed; `None` keeps its
    /// pending status (KakaoPay's real behaviour is unverified, and that is the harder case).
    pub expired_status: Option<OrderStatus>,
    /// Whether the order inquiry shows each action's `payload` (KAKAOPAY.md §2: one real
    /// test-mode answer had none).
    pub inquiry_payload: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            ready_window: Duration::from_secs(15 * 60),
            expired_status: None,
            inquiry_payload: true,
        }
    }
}

#[derive(Debug, Default)]
pub struct Ledger {
    pub rules: Rules,
    payments: HashMap<String, SimPayment>,
    by_page: HashMap<String, String>,
    /// tids in creation order, so the ledger lists them stably.
    order: Vec<String>,
}

fn hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap())
        .collect()
}

const URL_MAX: usize = 255;

fn url_field(f: &Fields, name: &str) -> Result<String, SimError> {
    let url = f.required_str(name, URL_MAX)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(SimError::invalid(format!("{name} must be an http(s) URL")));
    }
    Ok(url)
}

impl Ledger {
    pub fn new(rules: Rules) -> Self {
        Ledger {
            rules,
            ..Default::default()
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &SimPayment> {
        self.order.iter().filter_map(|tid| self.payments.get(tid))
    }

    pub fn get(&self, tid: &str) -> Option<&SimPayment> {
        self.payments.get(tid)
    }

    pub fn by_page_token(&self, token: &str) -> Option<&SimPayment> {
        self.by_page
            .get(token)
            .and_then(|tid| self.payments.get(tid))
    }

    fn expired(&self, p: &SimPayment) -> bool {
        let age = KstTime::now().utc() - p.created_at.utc();
        p.status.class() == crate::kakaopay::StatusClass::Pending
            && age.to_std().unwrap_or_default() > self.rules.ready_window
    }

    /// Applies the configured expiry, the way KakaoPay might once the window passes.
    fn settle_expiry(&mut self, tid: &str) {
        let Some(status) = self.rules.expired_status.clone() else {
            return;
        };
        if self.payments.get(tid).is_some_and(|p| self.expired(p)) {
            if let Some(p) = self.payments.get_mut(tid) {
                p.status = status;
            }
        }
    }

    fn find_mut(&mut self, cid: &str, tid: &str) -> Result<&mut SimPayment, SimError> {
        self.settle_expiry(tid);
        match self.payments.get_mut(tid) {
            Some(p) if p.cid == cid => Ok(p),
            _ => Err(SimError::new(
                codes::TID_NOT_FOUND,
                format!("TID does not exist: {tid}"),
            )),
        }
    }

    pub fn ready(&mut self, f: &Fields, public_url: &str) -> Result<Value, SimError> {
        let payment = ready_payment(f)?;
        let page_token = hex(64);
        let answer = ready_answer(&payment, public_url, &page_token);
        let tid = payment.tid.clone();
        self.by_page.insert(page_token, tid.clone());
        self.order.push(tid.clone());
        self.payments.insert(tid, payment);
        Ok(answer)
    }

    /// The member opened the payment page.
    pub fn open_page(&mut self, page_token: &str) {
        let Some(tid) = self.by_page.get(page_token).cloned() else {
            return;
        };
        self.settle_expiry(&tid);
        if let Some(p) = self.payments.get_mut(&tid) {
            if p.status == OrderStatus::Ready {
                p.status = OrderStatus::OpenPayment;
            }
        }
    }

    /// The member pressed a button on the payment page: returns where the browser goes next.
    pub fn user_action(&mut self, tid: &str, action: UserAction) -> Result<String, SimError> {
        self.settle_expiry(tid);
        let expired = self.payments.get(tid).is_some_and(|p| self.expired(p));
        let p = self
            .payments
            .get_mut(tid)
            .ok_or_else(|| SimError::new(codes::TID_NOT_FOUND, "TID does not exist"))?;
        if p.status.class() != crate::kakaopay::StatusClass::Pending || expired {
            return Err(SimError::new(
                codes::APPROVAL_FAILURE,
                format!("payment is no longer open (status {})", p.status),
            ));
        }
        Ok(match action {
            UserAction::Approve { method } => {
                // Pressing again (a double click, the back button) redirects with the same
                // token, so the merchant sees a repeated callback, not a new authorisation.
                let token = match (&p.status, &p.pg_token) {
                    (OrderStatus::AuthPassword, Some(token)) => token.clone(),
                    _ => hex(20),
                };
                p.status = OrderStatus::AuthPassword;
                p.pg_token = Some(token.clone());
                p.payment_method_type = Some(method.as_str().to_string());
                let sep = if p.approval_url.contains('?') {
                    '&'
                } else {
                    '?'
                };
                format!("{}{sep}pg_token={token}", p.approval_url)
            }
            UserAction::Cancel => {
                p.status = OrderStatus::QuitPayment;
                p.cancel_url.clone()
            }
            UserAction::Fail => {
                p.status = OrderStatus::FailAuthPassword;
                p.fail_url.clone()
            }
        })
    }

    pub fn approve(&mut self, f: &Fields) -> Result<Value, SimError> {
        let cid = f.cid()?;
        let tid = f.required_str("tid", 20)?;
        let partner_order_id = f.required_str("partner_order_id", 100)?;
        let partner_user_id = f.required_str("partner_user_id", 100)?;
        let pg_token = f.required_str("pg_token", 100)?;
        let payload = f.optional_str("payload", 200)?;
        let total = f.optional_int("total_amount")?;
        let expired = self.payments.get(&tid).is_some_and(|p| self.expired(p));
        let p = self.find_mut(&cid, &tid)?;
        if matches!(
            p.status,
            OrderStatus::SuccessPayment
                | OrderStatus::PartCancelPayment
                | OrderStatus::CancelPayment
        ) {
            return Err(SimError::new(
                codes::ALREADY_APPROVED,
                "payment is already done!",
            ));
        }
        if expired {
            return Err(SimError::new(codes::EXPIRED, "payment is expired!"));
        }
        let refuse =
            |why: &str| SimError::new(codes::APPROVAL_FAILURE, format!("approval failure! {why}"));
        if p.status != OrderStatus::AuthPassword {
            return Err(refuse(&format!("payment is in status {}", p.status)));
        }
        if p.pg_token.as_deref() != Some(pg_token.as_str()) {
            return Err(refuse("pg_token does not match"));
        }
        if p.partner_order_id != partner_order_id || p.partner_user_id != partner_user_id {
            return Err(refuse(
                "partner_order_id or partner_user_id differs from ready",
            ));
        }
        if total.is_some_and(|t| t != p.amount.total) {
            return Err(refuse("total_amount differs from ready"));
        }
        let now = KstTime::now();
        let aid = format!("A{}", hex(19));
        p.status = OrderStatus::SuccessPayment;
        p.approved_at = Some(now);
        p.pg_token = None;
        p.actions.push(Action {
            aid: aid.clone(),
            kind: "PAYMENT",
            at: now,
            amount: p.amount.total,
            payload: payload.clone(),
        });
        let method = p
            .payment_method_type
            .clone()
            .unwrap_or_else(|| "CARD".into());
        let mut answer = json!({
            "aid": aid, "tid": p.tid, "cid": p.cid,
            "partner_order_id": p.partner_order_id, "partner_user_id": p.partner_user_id,
            "payment_method_type": method, "item_name": p.item_name, "item_code": p.item_code,
            "quantity": p.quantity, "amount": p.amount.to_json(),
            "created_at": p.created_at, "approved_at": now, "payload": payload,
        });
        if method == "CARD" {
            answer["card_info"] = card_info();
        }
        Ok(answer)
    }

    pub fn cancel(&mut self, f: &Fields) -> Result<Value, SimError> {
        let cid = f.cid()?;
        let tid = f.required_str("tid", 20)?;
        let ask = CancelAsk::from_fields(f)?;
        let p = self.find_mut(&cid, &tid)?;
        if !p.is_paid() {
            return Err(SimError::new(
                codes::NOT_CANCELABLE,
                format!("payment cannot be canceled in status {}", p.status),
            ));
        }
        let this = ask.part_of(p)?;
        let now = KstTime::now();
        let aid = format!("A{}", hex(19));
        p.canceled = p.canceled.plus(this);
        p.canceled_at = Some(now);
        p.status = if p.remaining().total == 0 {
            OrderStatus::CancelPayment
        } else {
            OrderStatus::PartCancelPayment
        };
        p.actions.push(Action {
            aid: aid.clone(),
            kind: "CANCEL",
            at: now,
            amount: ask.amount,
            payload: ask.payload.clone(),
        });
        Ok(json!({
            "aid": aid, "tid": p.tid, "cid": p.cid, "status": p.status.as_str(),
            "partner_order_id": p.partner_order_id, "partner_user_id": p.partner_user_id,
            "payment_method_type": p.payment_method_type.as_deref().unwrap_or("CARD"),
            "item_name": p.item_name, "item_code": p.item_code, "quantity": p.quantity,
            "amount": p.amount.to_json(), "approved_cancel_amount": this.to_json(),
            "canceled_amount": p.canceled.to_json(), "cancel_available_amount": p.remaining().to_json(),
            "created_at": p.created_at, "approved_at": p.approved_at, "canceled_at": now,
            "payload": ask.payload,
        }))
    }

    pub fn order(&mut self, f: &Fields) -> Result<Value, SimError> {
        let cid = f.cid()?;
        let tid = f.required_str("tid", 20)?;
        let with_payload = self.rules.inquiry_payload;
        let p = self.find_mut(&cid, &tid)?;
        let mut answer = json!({
            "tid": p.tid, "cid": p.cid, "status": p.status.as_str(),
            "partner_order_id": p.partner_order_id, "partner_user_id": p.partner_user_id,
            "item_name": p.item_name, "item_code": p.item_code, "quantity": p.quantity,
            "amount": p.amount.to_json(), "canceled_amount": p.canceled.to_json(),
            "cancel_available_amount": p.remaining().to_json(), "created_at": p.created_at,
            "payment_action_details": p.actions.iter().map(|a| action_json(a, p.payment_method_type.as_deref())).collect::<Vec<_>>(),
        });
        if !with_payload {
            for action in answer["payment_action_details"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                action.as_object_mut().map(|a| a.remove("payload"));
            }
        }
        // Fields KakaoPay leaves out until they mean something.
        if let Some(m) = &p.payment_method_type {
            answer["payment_method_type"] = json!(m);
        }
        if let Some(t) = p.approved_at {
            answer["approved_at"] = json!(t);
        }
        if let Some(t) = p.canceled_at {
            answer["canceled_at"] = json!(t);
        }
        if p.approved_at.is_some() && p.payment_method_type.as_deref() == Some("CARD") {
            answer["selected_card_info"] = json!({
                "card_bin": "621640", "install_month": 0,
                "card_corp_name": "수협카드", "interest_free_install": "N",
                "installment_type": "CARD_INSTALLMENT",
            });
        }
        Ok(answer)
    }
}

/// The payment ready's fields describe, refused at the first field out of bounds.
fn ready_payment(f: &Fields) -> Result<SimPayment, SimError> {
    let cid = f.cid()?;
    f.optional_exact_len("cid_secret", 24)?;
    let partner_order_id = f.required_str("partner_order_id", 100)?;
    let partner_user_id = f.required_str("partner_user_id", 100)?;
    let item_name = f.required_str("item_name", 100)?;
    let item_code = f.optional_str("item_code", 100)?;
    let quantity = f.required_int("quantity")?;
    if quantity < 1 {
        return Err(SimError::invalid("quantity must be at least 1"));
    }
    let amount = ready_amounts(f)?;
    let approval_url = url_field(f, "approval_url")?;
    let cancel_url = url_field(f, "cancel_url")?;
    let fail_url = url_field(f, "fail_url")?;
    check_ready_options(f)?;
    Ok(SimPayment {
        tid: format!("T{}", hex(19)),
        cid,
        partner_order_id,
        partner_user_id,
        item_name,
        item_code,
        quantity,
        amount,
        canceled: Amounts::default(),
        approval_url,
        cancel_url,
        fail_url,
        status: OrderStatus::Ready,
        created_at: KstTime::now(),
        approved_at: None,
        canceled_at: None,
        payment_method_type: None,
        pg_token: None,
        actions: Vec::new(),
    })
}

fn ready_amounts(f: &Fields) -> Result<Amounts, SimError> {
    let total = f.required_int("total_amount")?;
    if total < 1 {
        return Err(SimError::invalid("total_amount must be at least 1"));
    }
    let tax_free = f.required_int("tax_free_amount")?;
    if !(0..=total).contains(&tax_free) {
        return Err(SimError::invalid(
            "tax_free_amount must be 0 to total_amount",
        ));
    }
    let default_vat = (total - tax_free + 5) / 11;
    let vat = f.optional_int("vat_amount")?.unwrap_or(default_vat);
    if !(0..=total - tax_free).contains(&vat) {
        return Err(SimError::invalid(
            "vat_amount must be 0 to total_amount - tax_free_amount",
        ));
    }
    let green_deposit = f.optional_int("green_deposit")?.unwrap_or(0);
    if !(0..=total).contains(&green_deposit) {
        return Err(SimError::invalid("green_deposit must be 0 to total_amount"));
    }
    Ok(Amounts {
        total,
        tax_free,
        vat,
        green_deposit,
        ..Default::default()
    })
}

/// Ready's fields on how the member may pay: refused when out of bounds, otherwise not kept.
fn check_ready_options(f: &Fields) -> Result<(), SimError> {
    if let Some(m) = f.optional_str("payment_method_type", 10)? {
        if m != "CARD" && m != "MONEY" {
            return Err(SimError::invalid(
                "payment_method_type must be CARD or MONEY",
            ));
        }
    }
    if let Some(m) = f.optional_int("install_month")? {
        if !(0..=12).contains(&m) {
            return Err(SimError::invalid("install_month must be 0 to 12"));
        }
    }
    f.optional_string_list("available_cards")?;
    f.optional_string_map("custom_json")?;
    Ok(())
}

/// Ready's answer: the payment page at each kind of device, and the app schemes.
fn ready_answer(p: &SimPayment, public_url: &str, page_token: &str) -> Value {
    let base = public_url.trim_end_matches('/');
    let page = |suffix: &str| format!("{base}/mockup/v1/{page_token}/{suffix}");
    let scheme = format!("kakaotalk://kakaopay/pg?url={base}/pay/mockup/{page_token}");
    json!({
        "tid": p.tid, "tms_result": false,
        "next_redirect_app_url": page("aInfo"),
        "next_redirect_mobile_url": page("mInfo"),
        "next_redirect_pc_url": page("info"),
        "android_app_scheme": scheme, "ios_app_scheme": scheme,
        "created_at": p.created_at,
    })
}

/// What a cancel request asks for, before it is checked against what is left of the payment.
struct CancelAsk {
    amount: i64,
    tax_free: i64,
    vat: Option<i64>,
    /// What the merchant believes is left: a stale figure is refused.
    available: Option<i64>,
    payload: Option<String>,
}

impl CancelAsk {
    fn from_fields(f: &Fields) -> Result<Self, SimError> {
        Ok(CancelAsk {
            amount: f.required_int("cancel_amount")?,
            tax_free: f.required_int("cancel_tax_free_amount")?,
            vat: f.optional_int("cancel_vat_amount")?,
            available: f.optional_int("cancel_available_amount")?,
            payload: f.optional_str("payload", 200)?,
        })
    }

    /// The part of `p` this cancel takes, or why KakaoPay refuses it.
    fn part_of(&self, p: &SimPayment) -> Result<Amounts, SimError> {
        let remaining = p.remaining();
        let amount_error = |why: String| SimError::new(codes::AMOUNT_INVALID, why);
        if let Some(avail) = self.available {
            if avail != remaining.total {
                return Err(amount_error(format!(
                    "cancel_available_amount {avail} differs from the cancelable amount {}",
                    remaining.total
                )));
            }
        }
        let (cancel_amount, cancel_tax_free) = (self.amount, self.tax_free);
        if cancel_amount < 1 || cancel_amount > remaining.total {
            return Err(amount_error(format!(
                "cancel_amount must be 1 to {}, got {cancel_amount}",
                remaining.total
            )));
        }
        if cancel_tax_free < 0
            || cancel_tax_free > remaining.tax_free
            || cancel_tax_free > cancel_amount
        {
            return Err(amount_error(format!(
                "cancel_tax_free_amount must be 0 to {}, got {cancel_tax_free}",
                remaining.tax_free.min(cancel_amount)
            )));
        }
        let full = cancel_amount == remaining.total;
        if !full && p.amount.green_deposit > 0 {
            return Err(amount_error(
                "partial cancel is impossible when green_deposit was used".into(),
            ));
        }
        let vat = match self.vat {
            Some(v) => v,
            // The last cancel takes whatever VAT is left, so the parts add up exactly.
            None if full => remaining.vat,
            None => ((cancel_amount - cancel_tax_free + 5) / 11).min(remaining.vat),
        };
        if vat < 0 || vat > remaining.vat || vat > cancel_amount - cancel_tax_free {
            return Err(amount_error(format!(
                "cancel_vat_amount must be 0 to {}, got {vat}",
                remaining.vat
            )));
        }
        Ok(Amounts {
            total: cancel_amount,
            tax_free: cancel_tax_free,
            vat,
            green_deposit: if full { remaining.green_deposit } else { 0 },
            ..Default::default()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Card,
    Money,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Card => "CARD",
            Method::Money => "MONEY",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    Approve { method: Method },
    Cancel,
    Fail,
}

fn card_info() -> Value {
    json!({
        "kakaopay_purchase_corp": "비씨카드", "kakaopay_purchase_corp_code": "104",
        "kakaopay_issuer_corp": "수협은행", "kakaopay_issuer_corp_code": "212",
        "purchase_corp": "비씨카드", "purchase_corp_code": "01",
        "issuer_corp": "수협카드", "issuer_corp_code": "13",
        "bin": "621640", "card_type": "체크", "install_month": "00",
        "approved_id": "30061524", "card_mid": "123456789",
        "interest_free_install": "N", "installment_type": "CARD_INSTALLMENT", "card_item_code": "0",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEYS: [&str; 16] = [
        "cid",
        "tid",
        "partner_order_id",
        "partner_user_id",
        "item_name",
        "quantity",
        "total_amount",
        "tax_free_amount",
        "vat_amount",
        "green_deposit",
        "approval_url",
        "cancel_url",
        "fail_url",
        "pg_token",
        "cancel_amount",
        "cancel_tax_free_amount",
    ];

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null)),
            ".{0,120}".prop_map(Value::from),
            Just(Value::from("TC0ONETIME")),
            Just(Value::from("https://example.com/x")),
            Just(json!([1, "a"])),
            Just(json!({"k": "v"})),
        ]
    }

    proptest! {
        /// Whatever fields arrive, the ledger answers a KakaoPay error or a success, never panics.
        #[test]
        fn arbitrary_fields_never_panic(entries in proptest::collection::vec((0..KEYS.len(), value()), 0..16)) {
            let body = Value::Object(entries.into_iter().map(|(k, v)| (KEYS[k].to_string(), v)).collect());
            let fields = Fields::from_json(body.to_string().as_bytes()).unwrap();
            let mut ledger = Ledger::default();
            for result in [
                ledger.ready(&fields, "http://sim"),
                ledger.approve(&fields),
                ledger.cancel(&fields),
                ledger.order(&fields),
            ] {
                if let Err(e) = result {
                    prop_assert!(e.code < 0);
                    prop_assert!((400..500).contains(&e.http_status));
                }
            }
        }
    }

    #[test]
    fn partial_cancels_sum_to_the_payment_to_the_won() {
        let mut ledger = Ledger::default();
        let ready = Fields::from_json(
            json!({"cid": "TC0ONETIME", "partner_order_id": "o", "partner_user_id": "u", "item_name": "i",
                   "quantity": 1, "total_amount": 10001, "tax_free_amount": 1001,
                   "approval_url": "http://a", "cancel_url": "http://c", "fail_url": "http://f"})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let tid = ledger.ready(&ready, "http://sim").unwrap()["tid"]
            .as_str()
            .unwrap()
            .to_string();
        ledger
            .user_action(
                &tid,
                UserAction::Approve {
                    method: Method::Card,
                },
            )
            .unwrap();
        let token = ledger.get(&tid).unwrap().pg_token.clone().unwrap();
        let approve = json!({"cid": "TC0ONETIME", "tid": tid, "partner_order_id": "o", "partner_user_id": "u", "pg_token": token});
        ledger
            .approve(&Fields::from_json(approve.to_string().as_bytes()).unwrap())
            .unwrap();
        for (amount, tax_free) in [(3333, 333), (3333, 333), (3335, 335)] {
            let cancel = json!({"cid": "TC0ONETIME", "tid": tid, "cancel_amount": amount, "cancel_tax_free_amount": tax_free});
            ledger
                .cancel(&Fields::from_json(cancel.to_string().as_bytes()).unwrap())
                .unwrap();
        }
        let p = ledger.get(&tid).unwrap();
        assert_eq!(p.status, OrderStatus::CancelPayment);
        assert_eq!(
            p.canceled, p.amount,
            "every part, VAT included, adds up exactly"
        );
    }
}
