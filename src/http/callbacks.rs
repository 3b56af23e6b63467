//! KakaoPay's redirects of the member's browser: `/kakaopay/callback/{payment_id}/{sig}/…`
//! where `sig` is an HMAC of the payment id under `CALLBACK_SECRET`, so nobody can approve,
//! cancel or fail another payment by guessing its URL.

use super::error::ApiError;
use super::{AppState, HttpConfig};
use crate::domain::{PaymentId, PaymentStatus, PgToken};
use crate::events::announce_payment_logged;
use crate::html::escape;
use crate::store::{Payment, Transition, TransitionOutcome};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use kakaopay_jobs::queue::{Enqueued, PreparedJob};
use kakaopay_jobs::{ApprovePayment, JobKind};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, payment_id: &str) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(payment_id.as_bytes());
    mac
}

pub fn sign(secret: &str, payment_id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(mac(secret, payment_id).finalize().into_bytes())
}

/// Constant-time check of a signature.
pub fn verify(secret: &str, payment_id: &str, sig: &str) -> bool {
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) {
        Ok(bytes) => mac(secret, payment_id).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

pub fn callback_url(config: &HttpConfig, payment_id: &str, action: Action) -> String {
    format!(
        "{}/kakaopay/callback/{payment_id}/{}/{}",
        config.public_url.trim_end_matches('/'),
        sign(config.callback_secret.expose(), payment_id),
        action.as_str()
    )
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    pg_token: Option<String>,
}

/// Back to the booking system's `return_url` with the outcome, or a small page without one.
fn back(return_url: Option<&str>, payment_id: &str, status: PaymentStatus) -> Response {
    if let Some(mut url) = return_url.and_then(|u| url::Url::parse(u).ok()) {
        url.query_pairs_mut()
            .append_pair("payment_id", payment_id)
            .append_pair("status", status.as_str());
        return (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_string())]).into_response();
    }
    let message = match status {
        PaymentStatus::Approving | PaymentStatus::Approved => {
            "Thank you: your payment is being completed."
        }
        PaymentStatus::Canceled => "The payment was canceled.",
        PaymentStatus::Failed => "The payment failed.",
        _ => "The payment is in progress.",
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Payment</title></head><body>\
         <h1>{}</h1><p id=\"payment\">{}</p><p id=\"status\">{}</p></body></html>",
        escape(message),
        escape(payment_id),
        status
    ))
    .into_response()
}

const PREFIX: &str = "/kakaopay/callback/";

/// A path as it may be logged: a callback's signature is a capability (it cancels or fails a
/// ready payment), so it is replaced; the payment id stays for whoever follows a payment.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return path.into();
    };
    let mut parts = rest.splitn(3, '/');
    let payment = parts.next().unwrap_or("");
    match (parts.next(), parts.next()) {
        (None, _) => path.into(),
        (Some(_), None) => format!("{PREFIX}{payment}/[sig]").into(),
        (Some(_), Some(action)) => format!("{PREFIX}{payment}/[sig]/{action}").into(),
    }
}

/// HEAD answers like GET but must not act: link checkers and mail scanners send it, and a
/// callback changes a payment.
pub async fn head() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(axum::http::header::ALLOW, "GET")],
    )
        .into_response()
}

/// What KakaoPay's redirect says the member did: the last segment of the callback URL,
/// parsed once (an unknown one names no callback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve,
    Cancel,
    Fail,
}

impl Action {
    const ALL: [Action; 3] = [Action::Approve, Action::Cancel, Action::Fail];

    pub fn parse(raw: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Cancel => "cancel",
            Action::Fail => "fail",
        }
    }

    /// The status the payment moves to from `ready`.
    fn status(self) -> PaymentStatus {
        match self {
            Action::Approve => PaymentStatus::Approving,
            Action::Cancel => PaymentStatus::Canceled,
            Action::Fail => PaymentStatus::Failed,
        }
    }

    fn transition(self, pg_token: Option<PgToken>) -> Transition {
        let cause = match self {
            Action::Approve => "the member approved at KakaoPay",
            Action::Cancel => "the member left at KakaoPay",
            Action::Fail => "KakaoPay reported the payment failed",
        };
        let mut t = Transition::new(&[PaymentStatus::Ready], self.status(), cause);
        t.pg_token = pg_token;
        t
    }
}

/// The `pg_token` an approval must carry.
fn pg_token(query: CallbackQuery) -> Result<PgToken, ApiError> {
    let token = query
        .pg_token
        .ok_or_else(|| ApiError::invalid("pg_token", "pg_token is required"))?;
    PgToken::parse(token).map_err(|e| ApiError::invalid("pg_token", format!("pg_token {e}")))
}

/// The callback's payment and action, once its signature is checked.
fn checked(
    config: &HttpConfig,
    payment_id: String,
    sig: &str,
    action: &str,
) -> Result<(PaymentId, Action), ApiError> {
    let payment_id = PaymentId::try_from(payment_id).map_err(|_| ApiError::not_found("payment"))?;
    if !verify(config.callback_secret.expose(), &payment_id, sig) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "the callback signature does not match",
        ));
    }
    let action = Action::parse(action).ok_or_else(|| ApiError::not_found("callback"))?;
    Ok((payment_id, action))
}

#[utoipa::path(get, path = "/kakaopay/callback/{payment_id}/{sig}/{action}", tag = "callbacks",
    params(("payment_id" = String, Path), ("sig" = String, Path, description = "HMAC of the payment id under CALLBACK_SECRET"),
        ("action" = String, Path, description = "approve, cancel or fail"), ("pg_token" = Option<String>, Query, description = "Required for approve")),
    responses((status = 303, description = "Back to return_url with payment_id and status"), (status = 200, description = "A small page without return_url"),
        (status = 400, description = "No pg_token"), (status = 403, description = "Bad signature"), (status = 404, description = "Unknown payment")))]
pub async fn callback(
    State(state): State<AppState>,
    Path((payment_id, sig, action)): Path<(String, String, String)>,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, ApiError> {
    let (payment_id, action) = checked(&state.config, payment_id, &sig, &action)?;
    let token = match action {
        Action::Approve => Some(pg_token(query)?),
        Action::Cancel | Action::Fail => None,
    };
    let Applied {
        return_url,
        payment,
        outcome,
        approval,
    } = apply(&state, &payment_id, action, action.transition(token)).await?;
    let status = match outcome {
        TransitionOutcome::Applied => action.status(),
        // A repeated callback (or one after another outcome) changes nothing; what it
        // answers from is made sure of first.
        TransitionOutcome::Refused(current) => {
            state.store.confirm_durable(&payment_id).await?;
            current
        }
        TransitionOutcome::Missing => return Err(ApiError::not_found("payment")),
    };
    let left = matches!(status, PaymentStatus::Canceled | PaymentStatus::Failed);
    if let Some(payment) = payment.filter(|_| left) {
        // The member's own cancel or failure, or a repeat of it (announcing is idempotent).
        announce_payment_logged(&state.store, &state.producer, &payment, status).await;
    }
    if let Some((job, enqueued)) = approval.filter(|_| status == PaymentStatus::Approving) {
        approval_enqueued(&state, &payment_id, &job, enqueued).await?;
    }
    Ok(back(return_url.as_deref(), &payment_id, status))
}

/// What a callback's one step to Redis read and did.
struct Applied {
    return_url: Option<String>,
    /// The record as it was (a cancel or a failure announces it).
    payment: Option<Payment>,
    outcome: TransitionOutcome,
    /// An approval's job, answered when it was enqueued in the same step.
    approval: Option<(PreparedJob, Option<Enqueued>)>,
}

/// The transition with what the callback reads. An approval (the busy path) reads only where
/// the member goes back to, and enqueues its job in the same step where Redis allows; a
/// cancel or a failure reads the whole record in the same round trip, to announce it.
async fn apply(
    state: &AppState,
    payment_id: &PaymentId,
    action: Action,
    transition: Transition,
) -> Result<Applied, ApiError> {
    if action != Action::Approve {
        let (payment, outcome) = state
            .store
            .payment_and_transition(payment_id, transition)
            .await?;
        let payment = payment.ok_or_else(|| ApiError::not_found("payment"))?;
        return Ok(Applied {
            return_url: payment.request.return_url.clone(),
            payment: Some(payment),
            outcome,
            approval: None,
        });
    }
    // The job id is the payment's: a repeated callback enqueues nothing.
    let job = ApprovePayment {
        payment_id: payment_id.to_string(),
    };
    let job = state.producer.prepare(&job, job.insert_opts())?;
    let (return_url, outcome, enqueued) = state
        .store
        .return_url_and_transition(payment_id, transition, &job)
        .await?;
    Ok(Applied {
        return_url,
        payment: None,
        outcome,
        approval: Some((job, enqueued)),
    })
}

/// Makes sure an `approving` payment's job is enqueued: enqueued now when it was not in the
/// transition's step (a cluster, durable writes, or an enqueue that failed there), which for
/// a repeated callback finds it a duplicate. Should this fail after the transition, the
/// reconciler enqueues it.
async fn approval_enqueued(
    state: &AppState,
    payment_id: &PaymentId,
    job: &PreparedJob,
    enqueued: Option<Enqueued>,
) -> Result<(), ApiError> {
    let enqueued = match enqueued {
        Some(enqueued) => enqueued,
        None => state.producer.enqueue_prepared(job).await?,
    };
    if !enqueued.duplicate {
        // Debug, not info: the busiest request stays lean; the approval's outcome is
        // logged by its worker, and the payment's history has the member's return.
        tracing::debug!(payment_id = %payment_id, "approval enqueued");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_payment_and_secret() {
        let sig = sign("s3cret", "pay_1");
        assert!(verify("s3cret", "pay_1", &sig));
        assert!(!verify("s3cret", "pay_2", &sig));
        assert!(!verify("other", "pay_1", &sig));
        assert!(!verify("s3cret", "pay_1", "not-base64!"));
        assert!(!verify("s3cret", "pay_1", &sig[..sig.len() - 1]));
    }

    #[test]
    fn logged_paths_carry_no_signature() {
        let sig = sign("s3cret", "pay_1");
        let path = format!("/kakaopay/callback/pay_1/{sig}/approve");
        assert_eq!(
            loggable_path(&path),
            "/kakaopay/callback/pay_1/[sig]/approve"
        );
        let path = format!("/kakaopay/callback/pay_1/{sig}/approve/more");
        assert!(!loggable_path(&path).contains(&sig));
        assert!(!loggable_path(&format!("/kakaopay/callback/pay_1/{sig}")).contains(&sig));
        assert_eq!(loggable_path("/v1/payments/pay_1"), "/v1/payments/pay_1");
    }
}
