//! A booking system written in Rust asks for a refund straight through Redis, without the
//! HTTP API: the same job, validation and idempotency as `POST /v1/payments/{id}/refunds`.
//!
//! `cargo run -p kakaopay-jobs --example request_refund -- <payment_id> <idempotency_key>`
//! (REDIS_URL and QUEUE_NAMESPACE as the service uses them). A `work` or `serve` process
//! then decides the refund by the rules and cancels it at KakaoPay; `GET /v1/refunds/{id}`
//! shows it.

use kakaopay_jobs::queue::{Connection, Producer, Purpose, Topology};
use kakaopay_jobs::refunds::request_refund;
use kakaopay_jobs::RefundRequest;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(payment_id), Some(key)) = (args.next(), args.next()) else {
        eprintln!("usage: request_refund <payment_id> <idempotency_key>");
        std::process::exit(2);
    };
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let namespace = std::env::var("QUEUE_NAMESPACE").unwrap_or_else(|_| "kakaopay".into());
    let conn = Connection::open(&Topology::Server(url), Purpose::Shared, None).await?;
    let producer = Producer::new(conn, namespace);

    let request = RefundRequest::new("member", "booking_canceled");
    let requested = request_refund(&producer, &payment_id, &key, request).await?;
    if requested.duplicate {
        println!(
            "refund {} was already requested with this key",
            requested.refund_id
        );
    } else {
        println!(
            "refund {} requested; a worker decides it by the rules",
            requested.refund_id
        );
    }
    Ok(())
}
