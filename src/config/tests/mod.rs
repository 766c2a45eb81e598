//! Tests of the config module as a whole: every Proxyfile form, every error
//! report (as snapshots), the formatter, and the model's matching helpers.

mod access;
mod cfeat;
mod docs;
mod errors;
mod fmt;
mod forms;
mod limits;
mod load;
mod log;
mod model;
mod options;
mod robust;
mod values;

use super::{parse, Config, ConfigError};

/// Parses `src`, failing the test with the rendered report if it is rejected.
fn parse_ok(src: &str) -> Config {
    match parse(src, "Proxyfile") {
        Ok(config) => config,
        Err(e) => panic!("expected {src:?} to parse, got:\n{}", e.render()),
    }
}

/// Parses `src`, failing the test if it is accepted.
fn parse_err(src: &str) -> ConfigError {
    match parse(src, "Proxyfile") {
        Ok(config) => panic!("expected {src:?} to be rejected, got {config:#?}"),
        Err(e) => e,
    }
}
