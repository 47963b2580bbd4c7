//! Scenario test (being written).
