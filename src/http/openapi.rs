//! `/openapi.json`: the contract as OpenAPI 3, generated from the handlers' annotations.

use super::{callbacks, integrations, payments, queues, refunds, reviews, search, transactions};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "kakaopay-worker", description = "KakaoPay payments and refunds as reliable jobs on Redis (API.md)"),
    paths(
        integrations::put, integrations::patch, integrations::get, integrations::delete,
        payments::create, payments::get, search::search,
        refunds::create, refunds::get, reviews::list, reviews::approve, reviews::dismiss,
        transactions::report,
        queues::list, queues::jobs, queues::retry, queues::job, queues::discard,
        queues::retry_dead, queues::pause, queues::resume, queues::workers,
        callbacks::callback,
        super::healthz, super::readyz, super::metrics,
    ),
    modifiers(&Bearer, &Errors, &Bodies, &OperationIds)
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every `/v1` route can answer the contract's errors, all in one shape: documenting them once
/// here keeps the handlers' annotations to their own outcomes, and lets schemathesis check
/// that no status outside this list ever comes back.
struct Errors;

/// The statuses any `/v1` operation may answer besides its own, with why.
const COMMON_ERRORS: [(&str, &str); 7] = [
    (
        "400",
        "invalid_request: a field, query or path parameter is malformed",
    ),
    ("401", "unauthorized: no valid bearer token"),
    ("403", "forbidden: the token's role may not do this"),
    ("404", "not_found"),
    ("413", "payload_too_large: the body is over the limit"),
    ("415", "unsupported_media_type: the body is not JSON"),
    (
        "503",
        "unavailable: Redis is unreachable; nothing was changed",
    ),
];

impl Modify for Errors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let schema = serde_json::from_value(serde_json::json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"]},
                },
            }},
        }))
        .expect("a valid schema");
        openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas
            .insert("Error".into(), RefOr::T(schema));
        let error = |description: &str| -> Response {
            serde_json::from_value(serde_json::json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }))
            .expect("a valid response")
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                for (status, description) in COMMON_ERRORS {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(error(description)));
                }
                // Documented statuses of the handler itself (404, 409, 502) get the body too.
                for (status, response) in responses.iter_mut() {
                    let is_error = status.starts_with('4') || status.starts_with('5');
                    if let RefOr::T(response) = response {
                        if is_error && response.content.is_empty() {
                            let description = response.description.clone();
                            *response = error(&description);
                        }
                    }
                }
            }
        }
    }
}

/// Each `/v1` success answer gets its JSON Schema (`openapi_bodies`).
struct Bodies;

impl Modify for Bodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                for (status, response) in operation.responses.responses.iter_mut() {
                    let (RefOr::T(response), Some(schema)) =
                        (response, super::openapi_bodies::body(method, path, status))
                    else {
                        continue;
                    };
                    let described = serde_json::json!({
                        "description": response.description,
                        "content": {"application/json": {"schema": schema}},
                    });
                    *response = serde_json::from_value(described).expect("a valid response");
                }
            }
        }
    }
}

/// Operation ids from the method and the path (`get_v1_payments_payment_id`): utoipa takes
/// the handler's name, and several handlers are called `get`.
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                let words: Vec<&str> = path
                    .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .filter(|w| !w.is_empty())
                    .collect();
                operation.operation_id = Some(format!("{method}_{}", words.join("_")));
            }
        }
    }
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&'static str, &mut utoipa::openapi::path::Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
        ("head", &mut item.head),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> serde_json::Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    #[test]
    fn every_v1_success_answer_has_a_schema() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('2') && status != "204" {
                        assert!(
                            response["content"]["application/json"]["schema"].is_object(),
                            "{method} {path} {status} has no schema"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document();
        let mut seen = std::collections::HashSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap().to_string();
                assert!(seen.insert(id.clone()), "{id} twice ({method} {path})");
            }
        }
    }
}
