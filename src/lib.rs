//! kakaopay-worker takes KakaoPay payments and refunds for a coworking platform, as jobs on
//! Redis that are never lost and never move money twice.
//!
//! The flow: the booking system asks for a payment (`http`), we call KakaoPay *ready*
//! (`kakaopay`) and store it; KakaoPay sends the member back to our signed callback, which
//! enqueues an approval job; a worker approves at KakaoPay, reconciling any ambiguous failure
//! through the order inquiry; refunds run the same way after the rules decide the amount.
//!
//! Layout, one module per concept:
//! - [`config`] the command line and environment; [`telemetry`] logging.
//! - [`domain`] types that parse once: won amounts, ids, services, statuses, refund policies.
//! - [`secret`] a string that cannot be printed by accident; [`html`] the one HTML escape.
//! - [`kakaopay`] the client for both API generations and its error classification.
//! - [`sim`] the KakaoPay simulator every test and the demo run against.
//! - [`bench`] `kakaopay-worker bench`: the whole service measured (BENCHMARKS.md).
//! - [`listener`] TCP listeners with a backlog for bursts of new connections, and the HTTP
//!   server on them with deadlines on slow clients.
//! - [`healthcheck`] the container healthcheck (`kakaopay-worker healthcheck`).
//! - [`http`] the API of API.md, and `/board`, the operators' server-rendered pages (one
//!   submodule per concept: overview, queues, jobs, reviews, payments, charts), which call
//!   the same functions as the `/v1` operator routes; [`registry`] the live processes;
//!   [`metrics`] Prometheus.
//! - The job argument types and the Redis queue under apalis live in the `kakaopay-jobs`
//!   crate (`jobs/`), so other Rust programs can enqueue the same jobs; so do the queue's
//!   per-minute counters the board's charts read (`kakaopay_jobs::queue::stats`).

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
