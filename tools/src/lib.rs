//! Shared helpers for the dkc tools.
