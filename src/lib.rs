//! kakaopay-worker takes KakaoPay payments and refunds for a coworking platform, as jobs on
//! Redis that are never lost and never move money twice.
//!
//! # The flow
//!
//! 1. The booking system asks for a payment: `POST /v1/payments` ([`http::payments`]) parses
//!    the request once ([`domain`]), calls KakaoPay *ready* ([`kakaopay`]) and stores the
//!    payment `ready` ([`store`]).
//! 2. KakaoPay sends the member's browser back to a signed callback ([`http::callbacks`]),
//!    which records `approving` and enqueues an `approve_payment` job (`kakaopay-jobs`).
//! 3. A worker (`workers::approve`) approves at KakaoPay; any answer it cannot be sure of is
//!    settled through the order inquiry, never by approving again.
//! 4. A refund (`POST /v1/payments/{id}/refunds`, [`http::refunds`], or
//!    `kakaopay_jobs::refunds::request_refund` straight into Redis) is stored `queued` and
//!    its `cancel_payment` job enqueued; the worker (`workers::cancel`) locks the payment,
//!    decides the amount by the rules ([`refunds`]), cancels at KakaoPay once and records it.
//!    What the rules leave to a person waits in the review queue ([`review`]).
//! 5. Every outcome is an event ([`events`]) that a `deliver_event` job POSTs to the booking
//!    system's webhook (`workers::deliver`); the reconciler ([`workers::reconciler`])
//!    finds what a crash left between two steps and finishes it.
//!
//! # The modules, one concept each
//!
//! Edges and settings:
//! - [`config`] the command line and environment (a leaf: it imports nothing of the app);
//!   [`startup`] builds the processes from it; [`telemetry`] logging; [`shutdown`] the stop
//!   signal; [`tls`] the rustls provider; [`secret`] a string that cannot be printed.
//! - [`listener`] TCP listeners for bursts and the HTTP server with deadlines on slow
//!   clients; [`http`] the API of API.md (one submodule per resource; `http::ids` parses path
//!   ids; `/board` the operators' pages); [`html`] the one HTML escape; [`ops`] `/healthz`,
//!   `/readyz` and `/metrics`; [`metrics`] the Prometheus series; [`healthcheck`] the
//!   container's healthcheck.
//!
//! Domain and rules:
//! - [`domain`] types that parse once: ids ([`domain::PaymentId`], [`domain::RefundId`],
//!   [`domain::LocationId`], [`domain::IdempotencyKey`], KakaoPay's `Tid`/`Aid`/`PgToken`),
//!   won amounts, services, statuses, refund policies.
//! - [`refunds`] the refund rules of REFUNDS.md and the one check of what a payment can take
//!   ([`refunds::refundable`]), pure functions; [`review`] an operator's approve and dismiss,
//!   shared by the API, the CLI and the board.
//! - [`events`] the outbound events: their kinds, one status-to-event mapping, signing.
//!
//! Storage and jobs:
//! - [`store`] every Redis key and command of the service (records, histories, indexes,
//!   idempotency, events, sessions), each state change one script on one hash slot.
//! - [`workers`] the apalis workers: `workers::approve`, `workers::cancel`,
//!   `workers::deliver`, [`workers::reconciler`]; [`registry`] the live processes.
//! - The job argument types (each knowing its job id) and the Redis queue under apalis live in
//!   the `kakaopay-jobs` crate (`jobs/`), so other Rust programs can enqueue the same jobs.
//!
//! KakaoPay and tools:
//! - [`kakaopay`] the client for both API generations and its error classification;
//!   [`sim`] the KakaoPay simulator every test and the demo run against.
//! - [`queues`] the `queues` command; [`demo`] the `demo` command; [`bench`] `kakaopay-worker
//!   bench`, the whole service measured (BENCHMARKS.md).
//!
//! Dependencies point one way: `http` and `workers` use `store`, `domain`, `refunds` and
//! `events`, never each other; `domain` and `config` import nothing of the rest.

pub mod bench;
pub mod config;
pub mod demo;
pub mod domain;
pub mod events;
pub mod healthcheck;
pub mod html;
pub mod http;
pub mod kakaopay;
pub mod listener;
pub mod metrics;
pub mod ops;
pub mod queues;
pub mod refunds;
pub mod registry;
pub mod review;
pub mod secret;
pub mod shutdown;
pub mod sim;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod workers;
