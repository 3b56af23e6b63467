//! The integration tests of the service, one module per area, in ONE test binary: every test
//! binary links the whole crate, so one binary instead of two dozen saves that link each time
//! (`cargo test --test api -- refunds::` runs one area; test names start with their module).
//!
//! Its tests run in parallel with each other whatever their area, on the local Redis (each
//! app in a namespace of its own), the Sentinel setup and the cluster shared by the whole
//! process (see `support::topology`), or private `redis-server` processes of their own.
//!
//! Only `tests/slow_clients.rs` is a binary of its own: it times `/healthz` while it holds
//! 2,000 connections, and tests of other areas running beside it would blur the timing.

#[path = "../support/mod.rs"]
mod support;

mod answers;
mod bench;
mod browser;
mod burst;
mod cli;
mod crash_storm;
mod edges;
mod events;
mod failover;
mod faults;
mod fixtures;
mod fuzz;
mod kakaopay_client;
mod money_paths;
mod operators;
mod payments;
mod queue_ops;
mod redis_crash;
mod refunds;
mod reviews;
mod schemathesis;
mod search;
mod sim;
mod worker_process;
