//! chmpx: router (under construction).
