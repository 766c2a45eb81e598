//! Proxyfile → typed [`Config`].
//!
//! This module does no I/O beyond reading the file: it parses KDL, validates every
//! value and reports errors with file, line, column and a suggested fix.

mod model;

pub use model::*;
