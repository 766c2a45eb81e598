//! End-to-end tests of bellhop's TLS and ACME pieces against a real Pebble.
//!
//! Every test starts its own Pebble (Debian package `pebble`) whose validation
//! ports are the test's own listeners, so tests run in parallel. Validation is
//! real (no PEBBLE_VA_ALWAYS_VALID); clients verify chains against Pebble's
//! per-run issuing root.

mod support;

mod certs_cli;
mod cluster;
mod cluster_storage;
mod issuance;
mod on_demand;
mod renewal;
mod server;
mod tls;
