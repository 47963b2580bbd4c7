//! k2hash: storage engine (under construction).
