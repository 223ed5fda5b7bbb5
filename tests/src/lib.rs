//! Integration tests live in `tests/`; this crate only builds the test guests.
