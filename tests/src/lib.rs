//! Helpers for the end-to-end tests: start and stop the real processes.
