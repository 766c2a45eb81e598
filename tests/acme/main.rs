//! ACME integration tests (placeholder).
