//! Test-only crate: see `tests/dashboard.rs`.
