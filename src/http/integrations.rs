//! `PUT/PATCH/GET/DELETE /v1/locations/{location_id}/kakaopay` (operators).

use super::auth::Admin;
use super::body::ApiJson;
use super::error::ApiError;
use super::ids::location_id;
use super::AppState;
use crate::domain::{Cid, RefundPolicy, Service};
use crate::secret::Secret;
use crate::store::{Integration, IntegrationSettings, KeyKind};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    #[schema(value_type = String)]
    cid: Cid,
    #[serde(default)]
    secret_key: Option<String>,
    #[serde(default)]
    admin_key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    services: Option<Vec<Service>>,
    #[serde(default)]
    automatic_refunds: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    refund_policy: Option<BTreeMap<Service, RefundPolicy>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    services: Option<Vec<Service>>,
    #[serde(default)]
    automatic_refunds: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    refund_policy: Option<BTreeMap<Service, RefundPolicy>>,
}

fn check_key(field: &str, key: &str) -> Result<Secret, ApiError> {
    let ok = !key.is_empty() && key.len() <= 200 && key.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(Secret::new(key))
    } else {
        Err(ApiError::invalid(
            field,
            "must be 1 to 200 printable characters without spaces",
        ))
    }
}

fn services(list: Option<Vec<Service>>) -> Vec<Service> {
    let mut list = list.unwrap_or_else(|| Service::ALL.to_vec());
    list.sort();
    list.dedup();
    list
}

/// The stored integration as operators see it: the key masked to its last four characters.
pub fn view(i: &Integration) -> Value {
    let key_field = match i.key_kind {
        KeyKind::SecretKey => "secret_key",
        KeyKind::AdminKey => "admin_key",
    };
    let mut v = json!({
        "location_id": i.location_id,
        "cid": i.cid,
        "api": match i.key_kind { KeyKind::SecretKey => "open_api", KeyKind::AdminKey => "legacy" },
        "services": i.services,
        "automatic_refunds": i.automatic_refunds,
        "refund_policy": i.refund_policy,
        "connected_at": i.connected_at,
        "updated_at": i.updated_at,
    });
    v[key_field] = json!(i.key.masked());
    v
}

#[utoipa::path(put, path = "/v1/locations/{location_id}/kakaopay", tag = "integrations", request_body = Connect,
    params(("location_id" = String, Path)), responses((status = 200, description = "Connects or replaces; exactly one of secret_key (open API) and admin_key (legacy); the key masked"),
        (status = 400, description = "Invalid field"), (status = 403, description = "Not an operator token")), security(("bearer" = [])))]
pub async fn put(
    _: Admin,
    State(state): State<AppState>,
    Path(location): Path<String>,
    ApiJson(body): ApiJson<Connect>,
) -> Result<Json<Value>, ApiError> {
    let location = location_id(&location)?;
    let (key_kind, key) = match (body.secret_key, body.admin_key) {
        (Some(k), None) => (KeyKind::SecretKey, check_key("secret_key", &k)?),
        (None, Some(k)) => (KeyKind::AdminKey, check_key("admin_key", &k)?),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "admin_key",
                "give exactly one of secret_key and admin_key",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "secret_key",
                "give exactly one of secret_key and admin_key",
            ))
        }
    };
    let integration = state
        .store
        .put_integration(
            &location,
            IntegrationSettings {
                cid: body.cid,
                key_kind,
                key,
                services: services(body.services),
                automatic_refunds: body.automatic_refunds.unwrap_or(true),
                refund_policy: body.refund_policy.unwrap_or_default(),
            },
        )
        .await?;
    tracing::info!(location = %location, version = integration.version, "KakaoPay integration connected");
    Ok(Json(view(&integration)))
}

#[utoipa::path(patch, path = "/v1/locations/{location_id}/kakaopay", tag = "integrations", request_body = Change,
    params(("location_id" = String, Path)), responses((status = 200, description = "Changes services, automatic_refunds, refund_policy; the key masked"),
        (status = 400, description = "Invalid field"), (status = 403, description = "Not an operator token")), security(("bearer" = [])))]
pub async fn patch(
    _: Admin,
    State(state): State<AppState>,
    Path(location): Path<String>,
    ApiJson(body): ApiJson<Change>,
) -> Result<Json<Value>, ApiError> {
    let location = location_id(&location)?;
    let mut integration = state
        .store
        .integration(&location)
        .await?
        .ok_or_else(|| ApiError::not_found("KakaoPay integration for this location"))?;
    if body.services.is_some() {
        integration.services = services(body.services);
    }
    if let Some(auto) = body.automatic_refunds {
        integration.automatic_refunds = auto;
    }
    if let Some(policy) = body.refund_policy {
        integration.refund_policy = policy;
    }
    integration.updated_at = crate::store::now_rfc3339();
    let integration = state.store.write_integration(integration).await?;
    Ok(Json(view(&integration)))
}

#[utoipa::path(get, path = "/v1/locations/{location_id}/kakaopay", tag = "integrations", params(("location_id" = String, Path)),
    responses((status = 200, description = "The integration, the key masked"), (status = 404, description = "Not connected")), security(("bearer" = [])))]
pub async fn get(
    _: Admin,
    State(state): State<AppState>,
    Path(location): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let location = location_id(&location)?;
    let integration = state
        .store
        .integration(&location)
        .await?
        .ok_or_else(|| ApiError::not_found("KakaoPay integration for this location"))?;
    Ok(Json(view(&integration)))
}

#[utoipa::path(delete, path = "/v1/locations/{location_id}/kakaopay", tag = "integrations", params(("location_id" = String, Path)),
    responses((status = 204, description = "Disconnected"), (status = 404, description = "Not connected")), security(("bearer" = [])))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Path(location): Path<String>,
) -> Result<Response, ApiError> {
    let location = location_id(&location)?;
    if !state.store.delete_integration(&location).await? {
        return Err(ApiError::not_found(
            "KakaoPay integration for this location",
        ));
    }
    tracing::info!(location = %location, "KakaoPay integration disconnected");
    Ok(StatusCode::NO_CONTENT.into_response())
}
