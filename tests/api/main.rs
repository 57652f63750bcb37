//! Black-box tests of the HTTP API: the real `creditd` binary on a port the
//! OS picks, a sled directory in a temp dir, and a fake NanoBanana that is a
//! real HTTP server on loopback. One test binary, one module per area.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/postgres.rs"]
mod postgres;

mod access;
mod admin;
mod alerts;
mod backup;
mod bad_input;
mod browser;
mod catalogue;
mod concurrency;
mod grafana;
mod grants;
mod holds;
mod idempotency;
mod lifecycle;
mod limits;
mod loadtest;
mod open_spends;
mod openapi;
mod prometheus;
mod spend;
mod sync;
