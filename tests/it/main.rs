//! The integration tests, one binary with a module per area (instead of one binary each, all
//! linking the whole service). Shared pieces live in `tests/support/`. Run one area with
//! `cargo test --test it receiver::`.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod cli;
mod cluster;
mod credentials;
mod demo;
mod deploy;
mod docs;
mod edge;
mod graph_sim;
mod n8n_examples;
mod openapi;
mod pipeline;
mod receiver;
mod renewal;
mod renewal_load;
mod store;
mod subscriptions;
mod supervision;
