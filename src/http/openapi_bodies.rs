//! The JSON Schemas of what each `/v1` route answers on success. The handlers build their
//! answers as JSON values (one view function per record), so the shapes are written here
//! once, next to each other, and `tests` checks that no success response goes undocumented.
//! Properties are typed and the fields every answer has are required; other fields may come.

use serde_json::{json, Value};

const PAYMENT_STATUSES: [&str; 8] = [
    "ready",
    "approving",
    "approved",
    "partially_refunded",
    "refunded",
    "canceled",
    "failed",
    "expired",
];

const REFUND_STATUSES: [&str; 7] = [
    "queued",
    "processing",
    "succeeded",
    "rejected",
    "manual_review",
    "dismissed",
    "failed",
];

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn text_or_null() -> Value {
    json!({"type": ["string", "null"]})
}

fn history() -> Value {
    json!({"type": "array", "items": {"type": "object"}})
}

fn refund() -> Value {
    object(
        &["refund_id", "payment_id", "status", "amount", "history"],
        json!({
            "refund_id": {"type": "string"}, "payment_id": {"type": "string"},
            "status": {"type": "string", "enum": REFUND_STATUSES}, "amount": {"type": "integer"},
            "tax_free_amount": {"type": "integer"}, "rule": text_or_null(), "reason": text_or_null(),
            "requested_by": {"type": "string"}, "created_at": {"type": "string"},
            "history": history(),
        }),
    )
}

fn payment() -> Value {
    object(
        &[
            "payment_id",
            "location_id",
            "order_id",
            "status",
            "tid",
            "total_amount",
            "refunded_amount",
            "refunds",
            "history",
        ],
        json!({
            "payment_id": {"type": "string"}, "location_id": {"type": "string"},
            "order_id": {"type": "string"}, "user_id": {"type": "string"}, "service": {"type": "string"},
            "item_name": {"type": "string"}, "quantity": {"type": "integer"},
            "total_amount": {"type": "integer"}, "tax_free_amount": {"type": "integer"},
            "status": {"type": "string", "enum": PAYMENT_STATUSES}, "tid": {"type": "string"}, "aid": text_or_null(),
            "payment_method_type": text_or_null(), "approved_at": text_or_null(),
            "amount": {"type": ["object", "null"]}, "refunded_amount": {"type": "integer"},
            "refunds": {"type": "array", "items": refund()}, "history": history(),
            "created_at": {"type": "string"}, "expires_at": {"type": "string"},
        }),
    )
}

fn created_payment() -> Value {
    object(
        &[
            "payment_id",
            "status",
            "tid",
            "redirect",
            "created_at",
            "expires_at",
        ],
        json!({
            "payment_id": {"type": "string"}, "status": {"type": "string", "enum": PAYMENT_STATUSES},
            "tid": {"type": "string"}, "redirect": {"type": "object"},
            "created_at": {"type": "string"}, "expires_at": {"type": "string"},
        }),
    )
}

fn integration() -> Value {
    object(
        &[
            "location_id",
            "cid",
            "services",
            "automatic_refunds",
            "refund_policy",
        ],
        json!({
            "location_id": {"type": "string"}, "cid": {"type": "string"},
            "api": {"type": "string", "enum": ["open_api", "legacy"]},
            "secret_key": {"type": "string"}, "admin_key": {"type": "string"},
            "services": {"type": "array", "items": {"type": "string"}},
            "automatic_refunds": {"type": "boolean"}, "refund_policy": {"type": "object"},
        }),
    )
}

fn job() -> Value {
    object(
        &["id", "status", "attempts", "max_attempts"],
        json!({
            "id": {"type": "string"}, "queue": {"type": "string"}, "status": {"type": "string"},
            "attempts": {"type": "integer"}, "max_attempts": {"type": "integer"},
            "last_error": text_or_null(), "enqueued_at": text_or_null(), "run_at": text_or_null(),
        }),
    )
}

fn page_of(key: &str, item: Value) -> Value {
    json!({
        "type": "object", "required": [key, "next_cursor"],
        "properties": {key: {"type": "array", "items": item}, "next_cursor": text_or_null()},
    })
}

fn payment_summary() -> Value {
    object(
        &[
            "payment_id",
            "location_id",
            "order_id",
            "status",
            "tid",
            "total_amount",
            "created_at",
        ],
        json!({
            "payment_id": {"type": "string"}, "location_id": {"type": "string"},
            "order_id": {"type": "string"}, "status": {"type": "string", "enum": PAYMENT_STATUSES},
            "tid": {"type": "string"}, "aid": text_or_null(), "total_amount": {"type": "integer"},
            "refunded_amount": {"type": "integer"}, "created_at": {"type": "string"},
        }),
    )
}

fn worker() -> Value {
    object(
        &[
            "id",
            "host",
            "pid",
            "kind",
            "queues",
            "concurrency",
            "in_flight",
            "started_at",
            "last_seen",
        ],
        json!({
            "id": {"type": "string"}, "host": {"type": "string"}, "pid": {"type": "integer"},
            "kind": {"type": "string"}, "queues": {"type": "array", "items": {"type": "string"}},
            "concurrency": {"type": "integer"}, "in_flight": {"type": "integer"},
            "started_at": {"type": "string"}, "last_seen": {"type": "string"},
        }),
    )
}

fn transactions() -> Value {
    json!({"type": "array", "items": object(
        &["id", "time", "description", "type", "amount", "status", "tid", "aid"],
        json!({
            "id": {"type": "string"}, "time": {"type": "string"}, "description": {"type": "string"},
            "type": {"type": "string", "enum": ["payment", "refund"]}, "amount": {"type": "integer"},
            "status": {"type": "string"}, "tid": {"type": "string"}, "aid": {"type": "string"},
        }),
    )})
}

/// The success body of `method path` answering `status`, when it has one.
pub fn body(method: &str, path: &str, status: &str) -> Option<Value> {
    let queue_row = object(
        &[
            "name",
            "pending",
            "running",
            "scheduled",
            "done",
            "failed",
            "dead",
        ],
        json!({
            "name": {"type": "string"}, "pending": {"type": "integer"}, "running": {"type": "integer"},
            "scheduled": {"type": "integer"}, "done": {"type": "integer"},
            "failed": {"type": "integer"}, "dead": {"type": "integer"},
        }),
    );
    Some(match (method, path, status) {
        ("put" | "patch" | "get", "/v1/locations/{location_id}/kakaopay", "200") => integration(),
        ("post", "/v1/payments", "201" | "200") => created_payment(),
        ("get", "/v1/payments/{payment_id}", "200") => payment(),
        ("post", "/v1/payments/{payment_id}/refunds", "202") => object(
            &["refund_id", "status"],
            json!({"refund_id": {"type": "string"}, "status": {"type": "string", "enum": REFUND_STATUSES}}),
        ),
        ("get", "/v1/refunds/{refund_id}", "200") => refund(),
        ("get", "/v1/transactions", "200") => transactions(),
        ("get", "/v1/queues", "200") => object(
            &["queues"],
            json!({"queues": {"type": "array", "items": queue_row}}),
        ),
        ("get", "/v1/queues/{name}/jobs", "200") => page_of("jobs", job()),
        ("get", "/v1/queues/{name}/jobs/{job_id}", "200") => job(),
        ("post", "/v1/queues/{name}/retry-dead", "202") => {
            object(&["retried"], json!({"retried": {"type": "integer"}}))
        }
        ("post", "/v1/queues/{name}/pause" | "/v1/queues/{name}/resume", "200") => object(
            &["name", "paused"],
            json!({"name": {"type": "string"}, "paused": {"type": "boolean"}}),
        ),
        ("get", "/v1/workers", "200") => object(
            &["workers"],
            json!({"workers": {"type": "array", "items": worker()}}),
        ),
        ("get", "/v1/payments", "200") => page_of("payments", payment_summary()),
        ("get", "/v1/refunds", "200") => page_of("refunds", refund()),
        ("post", "/v1/refunds/{refund_id}/approve", "202") => object(
            &["refund_id", "status"],
            json!({"refund_id": {"type": "string"}, "status": {"type": "string", "enum": REFUND_STATUSES}}),
        ),
        ("post", "/v1/refunds/{refund_id}/dismiss", "200") => refund(),
        ("post", "/v1/queues/{name}/jobs/{job_id}/retry", "202") => object(
            &["id", "status"],
            json!({"id": {"type": "string"}, "status": {"type": "string"}}),
        ),
        _ => return None,
    })
}
