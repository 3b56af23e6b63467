//! `POST /v1/payments` (calls KakaoPay *ready*, the one slow call a request makes) and
//! `GET /v1/payments/{payment_id}`.

use super::auth::Client;
use super::body::{parse, ApiJson};
use super::callbacks::{callback_url, Action};
use super::error::ApiError;
use super::ids::{checked_payment_id, location_id};
use super::{AppState, HttpConfig};
use crate::domain::{ItemName, OrderId, PaymentId, RefundPolicy, Service, Tid, UserId, Won};
use crate::kakaopay::ReadyRequest;
use crate::store::{Integration, NewPayment, Payment, Redirect};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, FixedOffset};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// KakaoPay's amounts are Java `Integer`s.
const MAX_AMOUNT: i64 = i32::MAX as i64;
const MAX_METADATA: usize = 4 * 1024;
const MAX_URL: usize = 2048;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayment {
    location_id: String,
    order_id: String,
    user_id: String,
    service: String,
    item_name: String,
    quantity: i64,
    total_amount: i64,
    tax_free_amount: i64,
    #[serde(default)]
    vat_amount: Option<i64>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    return_url: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    refund_policy: Option<Value>,
}

fn field<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::invalid(name, format!("{name} {e}")))
}

fn http_url(name: &str, raw: &str) -> Result<String, ApiError> {
    let url = url::Url::parse(raw)
        .map_err(|e| ApiError::invalid(name, format!("{name} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || raw.len() > MAX_URL {
        return Err(ApiError::invalid(
            name,
            format!("{name} must be an http(s) URL of at most {MAX_URL} characters"),
        ));
    }
    Ok(raw.to_string())
}

impl CreatePayment {
    /// Parses once: after this every value is known to be valid.
    pub fn validate(self) -> Result<NewPayment, ApiError> {
        let service: Service = field("service", self.service.parse())?;
        let quantity = self.quantity()?;
        self.check_amounts()?;
        let starts_at = self.starts_at(service)?;
        let return_url = self
            .return_url
            .as_deref()
            .map(|u| http_url("return_url", u))
            .transpose()?;
        check_metadata(self.metadata.as_ref())?;
        let refund_policy = self.refund_policy.map(refund_policy).transpose()?;
        Ok(NewPayment {
            location_id: location_id(&self.location_id)?,
            order_id: field("order_id", OrderId::parse(self.order_id))?,
            user_id: field("user_id", UserId::parse(self.user_id))?,
            service,
            item_name: field("item_name", ItemName::parse(self.item_name))?,
            quantity,
            total_amount: field("total_amount", Won::positive(self.total_amount))?,
            tax_free_amount: field("tax_free_amount", Won::new(self.tax_free_amount))?,
            vat_amount: self
                .vat_amount
                .map(|v| field("vat_amount", Won::new(v)))
                .transpose()?,
            starts_at,
            return_url,
            metadata: self.metadata,
            refund_policy,
        })
    }

    fn quantity(&self) -> Result<u32, ApiError> {
        u32::try_from(self.quantity)
            .ok()
            .filter(|q| (1..=MAX_AMOUNT as u32).contains(q))
            .ok_or_else(|| {
                ApiError::invalid("quantity", format!("quantity must be 1 to {MAX_AMOUNT}"))
            })
    }

    /// The total, its tax-free part and its VAT, which KakaoPay takes as Java `Integer`s.
    fn check_amounts(&self) -> Result<(), ApiError> {
        if !(1..=MAX_AMOUNT).contains(&self.total_amount) {
            return Err(ApiError::invalid(
                "total_amount",
                format!("total_amount must be 1 to {MAX_AMOUNT}"),
            ));
        }
        if !(0..=self.total_amount).contains(&self.tax_free_amount) {
            return Err(ApiError::invalid(
                "tax_free_amount",
                "tax_free_amount must be 0 to total_amount",
            ));
        }
        match self.vat_amount {
            Some(vat) if !(0..=self.total_amount - self.tax_free_amount).contains(&vat) => {
                Err(ApiError::invalid(
                    "vat_amount",
                    "vat_amount must be 0 to total_amount - tax_free_amount",
                ))
            }
            _ => Ok(()),
        }
    }

    /// When the booked thing starts: required where the refund rules measure notice by it.
    fn starts_at(&self, service: Service) -> Result<Option<DateTime<FixedOffset>>, ApiError> {
        let starts_at = self
            .starts_at
            .as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s).map_err(|_| {
                    ApiError::invalid("starts_at", "starts_at must be RFC 3339 with an offset")
                })
            })
            .transpose()?;
        if service.needs_start() && starts_at.is_none() {
            return Err(ApiError::invalid(
                "starts_at",
                format!("starts_at is required for {service}"),
            ));
        }
        Ok(starts_at)
    }
}

fn check_metadata(metadata: Option<&Value>) -> Result<(), ApiError> {
    let Some(m) = metadata else {
        return Ok(());
    };
    if !m.is_object() {
        return Err(ApiError::invalid(
            "metadata",
            "metadata must be a JSON object",
        ));
    }
    if m.to_string().len() > MAX_METADATA {
        return Err(ApiError::invalid(
            "metadata",
            "metadata must be at most 4 KiB",
        ));
    }
    Ok(())
}

/// The payment's own refund policy, its mistakes named by their field inside it.
fn refund_policy(raw: Value) -> Result<RefundPolicy, ApiError> {
    parse::<RefundPolicy>(raw.to_string().as_bytes()).map_err(|e| {
        ApiError::invalid(
            format!("refund_policy.{}", e.field.unwrap_or_default())
                .trim_end_matches(".body")
                .to_string(),
            e.message,
        )
    })
}

fn fingerprint(p: &NewPayment) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(p).expect("requests serialize"),
    ))
}

/// How the create call answers: the payment and its redirect URLs.
fn created_view(p: &Payment) -> Value {
    json!({
        "payment_id": p.payment_id,
        "status": p.status,
        "tid": p.tid,
        "redirect": p.redirect,
        "created_at": p.created_at,
        "expires_at": p.expires_at,
    })
}

/// Everything about a payment (`GET`), its refunds included.
pub fn full_view(p: &Payment, refunds: &[crate::store::Refund]) -> Value {
    let r = &p.request;
    json!({
        "payment_id": p.payment_id,
        "location_id": r.location_id,
        "order_id": r.order_id,
        "user_id": r.user_id,
        "service": r.service,
        "item_name": r.item_name,
        "quantity": r.quantity,
        "total_amount": r.total_amount,
        "tax_free_amount": r.tax_free_amount,
        "vat_amount": r.vat_amount,
        "starts_at": r.starts_at,
        "return_url": r.return_url,
        "metadata": r.metadata,
        "refund_policy": r.refund_policy,
        "status": p.status,
        "tid": p.tid,
        "aid": p.approval.as_ref().map(|a| &a.aid),
        "payment_method_type": p.approval.as_ref().and_then(|a| a.payment_method_type.as_ref()),
        "approved_at": p.approval.as_ref().and_then(|a| a.approved_at.as_ref()),
        "amount": p.approval.as_ref().map(|a| &a.amount),
        "refunded_amount": p.refunded,
        "refunded_tax_free_amount": p.refunded_tax_free,
        "refunds": refunds.iter().map(super::refunds::view).collect::<Vec<_>>(),
        "failure": p.failure,
        "redirect": p.redirect,
        "created_at": p.created_at,
        "expires_at": p.expires_at,
        "updated_at": p.updated_at,
        "history": p.history,
    })
}

/// A repeat of the request that made `existing` answers it; any other body is a conflict.
fn repeat_or_conflict(existing: &Payment, fingerprint: &str) -> Result<Response, ApiError> {
    if existing.fingerprint == fingerprint {
        Ok((StatusCode::OK, Json(created_view(existing))).into_response())
    } else {
        Err(ApiError::conflict(
            "order_conflict",
            "this location already has a payment for this order_id with a different request",
        ))
    }
}

#[utoipa::path(post, path = "/v1/payments", tag = "payments", request_body = CreatePayment,
    responses((status = 201, description = "Payment readied at KakaoPay: payment_id, status, tid, redirect URLs"),
        (status = 200, description = "The same request again: the same payment"),
        (status = 400, description = "Invalid field (named)"), (status = 409, description = "not_connected, service_disabled, order_conflict"),
        (status = 502, description = "KakaoPay refused ready"), (status = 503, description = "Redis or KakaoPay unreachable")),
    security(("bearer" = [])))]
pub async fn create(
    _: Client,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreatePayment>,
) -> Result<Response, ApiError> {
    let request = body.validate()?;
    let fingerprint = fingerprint(&request);
    let store = &state.store;
    let location = request.location_id.clone();
    let order = request.order_id.as_str().to_string();

    // One payment per location and order. A request that finds the order taken answers that
    // payment (or a conflict); one that finds it being created waits for it.
    let payment_id = PaymentId::new(&location, &request.order_id);
    let waited_since = Instant::now();
    // Held for longer than the ready call can take; a reservation whose request died is free
    // again after that.
    let hold = state.config.kakaopay_timeout + Duration::from_secs(5);
    while let Some(holder) = store
        .reserve_order(&location, &order, &payment_id, hold)
        .await?
    {
        if let Some(existing) = store.payment(&holder).await? {
            // It may be what an earlier request stored and answered 503 for (too few
            // replicas in time): answered only once the replicas hold it.
            store.confirm_durable(&holder).await?;
            return repeat_or_conflict(&existing, &fingerprint);
        }
        if waited_since.elapsed() > state.config.kakaopay_timeout + Duration::from_secs(2) {
            return Err(ApiError::unavailable(
                "the same order is being created by another request; try again",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let result = ready(&state, &payment_id, &request, fingerprint).await;
    // Give the order back so the booking system can try again at once, unless the payment may
    // have been stored (the write's answer lost, or too few replicas acknowledged it in time):
    // then the repeat must find it, and answer it.
    if result.is_err() && matches!(store.payment_state(&payment_id).await, Ok(None)) {
        if let Err(e) = store.release_order(&location, &order, &payment_id).await {
            tracing::warn!(error = %e, "could not release an order reservation; it expires by itself");
        }
    }
    let payment = result?;
    tracing::info!(payment_id = %payment.payment_id, tid = %payment.tid, location = %location, "payment ready");
    Ok((StatusCode::CREATED, Json(created_view(&payment))).into_response())
}

/// The location's integration, if it takes this payment.
async fn integration_for(state: &AppState, request: &NewPayment) -> Result<Integration, ApiError> {
    let integration = state
        .store
        .integration(&request.location_id)
        .await?
        .ok_or_else(|| {
            ApiError::conflict("not_connected", "this location has no KakaoPay integration")
        })?;
    if !integration.enables(request.service) {
        return Err(ApiError::conflict(
            "service_disabled",
            format!(
                "KakaoPay is not enabled for {} at this location",
                request.service
            ),
        ));
    }
    Ok(integration)
}

fn ready_request(
    config: &HttpConfig,
    integration: &Integration,
    payment_id: &PaymentId,
    request: &NewPayment,
) -> ReadyRequest {
    let url = |action| callback_url(config, payment_id, action);
    ReadyRequest {
        cid: integration.cid.clone(),
        partner_order_id: request.order_id.clone(),
        partner_user_id: request.user_id.clone(),
        item_name: request.item_name.clone(),
        item_code: None,
        quantity: request.quantity,
        total_amount: request.total_amount,
        tax_free_amount: request.tax_free_amount,
        vat_amount: request.vat_amount,
        green_deposit: None,
        approval_url: url(Action::Approve),
        cancel_url: url(Action::Cancel),
        fail_url: url(Action::Fail),
        available_cards: None,
        payment_method_type: None,
        install_month: None,
        use_share_installment: None,
        custom_json: None,
    }
}

/// KakaoPay's tid, which every later call names: without a well-formed one the payment
/// could never be approved, so it is not stored.
fn tid_of(raw: String) -> Result<Tid, ApiError> {
    let refusal = |message: &str| ApiError::new(StatusCode::BAD_GATEWAY, "kakaopay_error", message);
    if raw.is_empty() {
        return Err(refusal("KakaoPay answered ready without a tid"));
    }
    Tid::parse(raw).map_err(|e| refusal(&format!("KakaoPay answered ready with a tid that {e}")))
}

async fn ready(
    state: &AppState,
    payment_id: &PaymentId,
    request: &NewPayment,
    fingerprint: String,
) -> Result<Payment, ApiError> {
    let integration = integration_for(state, request).await?;
    let ready = ready_request(&state.config, &integration, payment_id, request);
    let answer = state
        .kakaopay
        .ready(&integration.credentials(), &ready)
        .await?;
    let tid = tid_of(answer.tid)?;
    let expires_at = (chrono::Utc::now() + state.config.ready_window)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let redirect = Redirect {
        pc: answer.next_redirect_pc_url,
        mobile: answer.next_redirect_mobile_url,
        app: answer.next_redirect_app_url,
        android_app_scheme: answer.android_app_scheme,
        ios_app_scheme: answer.ios_app_scheme,
    };
    state
        .store
        .create_payment(
            payment_id,
            request.clone(),
            tid,
            redirect,
            expires_at,
            integration.version,
            fingerprint,
        )
        .await?
        .ok_or_else(|| {
            ApiError::unavailable(
                "the order reservation expired while KakaoPay answered; try again",
            )
        })
}

#[utoipa::path(get, path = "/v1/payments/{payment_id}", tag = "payments", params(("payment_id" = String, Path)),
    responses((status = 200, description = "The payment with refunds and history"), (status = 404, description = "Unknown payment")),
    security(("bearer" = [])))]
pub async fn get(
    _: Client,
    State(state): State<AppState>,
    Path(payment_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (payment, refunds) = state
        .store
        .payment_with_refunds(&checked_payment_id(&payment_id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("payment"))?;
    Ok(Json(full_view(&payment, &refunds)))
}
