//! Ids as they come in on a path or in a query: parsed once into their types. A payment or
//! refund id that is not one of ours names nothing (404) and never reaches a key.

use super::error::ApiError;
use crate::domain::{LocationId, PaymentId, RefundId};

pub fn checked_payment_id(raw: &str) -> Result<PaymentId, ApiError> {
    PaymentId::try_from(raw).map_err(|_| ApiError::not_found("payment"))
}

pub fn checked_refund_id(raw: &str) -> Result<RefundId, ApiError> {
    RefundId::try_from(raw).map_err(|_| ApiError::not_found("refund"))
}

/// A location id given by the caller: a malformed one is the caller's mistake (400).
pub fn location_id(raw: &str) -> Result<LocationId, ApiError> {
    LocationId::try_from(raw).map_err(|e| ApiError::invalid("location_id", e.to_string()))
}
