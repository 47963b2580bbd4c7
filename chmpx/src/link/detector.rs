//! Failure detection logic, separate from sockets and from the clock: every method takes `now`.
//!
//! A peer is alive while some frame arrived within `timeout`. The session checks at least once
//! per heartbeat interval (and exactly at the deadline), so a silent peer is declared DOWN at most
//! `timeout + interval` after its last frame. Time the local reader spends blocked handing
//! frames to a slow daemon does not count against the peer: the peer is not silent, we are deaf.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct FailureDetector {
    timeout: Duration,
    last_rx: Instant,
    /// Set while our reader is blocked delivering to the daemon; the peer gets credit for it.
    blocked_since: Option<Instant>,
}

impl FailureDetector {
    /// Starts the clock at `now` (the end of the handshake counts as a received frame).
    pub fn new(timeout: Duration, now: Instant) -> Self {
        FailureDetector {
            timeout,
            last_rx: now,
            blocked_since: None,
        }
    }

    /// A frame arrived.
    pub fn on_frame(&mut self, now: Instant) {
        self.last_rx = self.last_rx.max(now);
    }

    /// The reader started (`true`) or finished (`false`) a blocking hand-off to the daemon.
    pub fn set_blocked(&mut self, blocked: bool, now: Instant) {
        if blocked {
            self.blocked_since.get_or_insert(now);
        } else if self.blocked_since.take().is_some() {
            self.on_frame(now);
        }
    }

    /// When the peer will be DOWN if nothing arrives; `None` while we are blocked.
    pub fn deadline(&self) -> Option<Instant> {
        match self.blocked_since {
            Some(_) => None,
            None => Some(self.last_rx + self.timeout),
        }
    }

    /// Whether the peer is to be declared DOWN at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(300);

    #[test]
    fn silence_longer_than_the_timeout_expires_and_frames_postpone_it() {
        let t0 = Instant::now();
        let mut d = FailureDetector::new(T, t0);
        assert!(!d.expired(t0 + T - Duration::from_millis(1)));
        assert!(d.expired(t0 + T));
        d.on_frame(t0 + Duration::from_millis(200));
        assert!(!d.expired(t0 + T));
        assert!(d.expired(t0 + Duration::from_millis(500)));
        // A stale timestamp never moves the deadline back.
        d.on_frame(t0);
        assert_eq!(d.deadline(), Some(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn time_blocked_on_the_daemon_is_not_held_against_the_peer() {
        let t0 = Instant::now();
        let mut d = FailureDetector::new(T, t0);
        d.set_blocked(true, t0 + Duration::from_millis(100));
        assert!(!d.expired(t0 + Duration::from_secs(10)));
        d.set_blocked(false, t0 + Duration::from_secs(10));
        assert!(!d.expired(t0 + Duration::from_secs(10) + T / 2));
        assert!(d.expired(t0 + Duration::from_secs(10) + T));
    }
}
