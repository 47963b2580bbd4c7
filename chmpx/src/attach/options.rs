//! Settings of the attach transport, shared by the chmpx side and the process side. Defaults
//! fit a stock kernel without root (DESIGN.md §2).

use std::time::Duration;

use super::envelope::ENVELOPE_HEADER_BYTES;
use super::error::AttachError;
use crate::ipc::limits::STOCK_MSG_MAX;
use crate::ipc::ring::{framed_len, RING_CAPACITY_MIN_BYTES};

/// Default largest body, bytes (1 MiB).
pub const BODY_SIZE_MAX_DEFAULT_BYTES: usize = 1 << 20;
/// Hard ceiling for `body_size_max` (rings are sized from it; 1 GiB).
pub const BODY_SIZE_MAX_CEILING_BYTES: usize = 1 << 30;
/// Default depth of each doorbell queue; a pending doorbell is enough, so keep it small.
pub const DOORBELL_QUEUE_DEPTH_DEFAULT: u32 = 4;
/// Default polling time of a waiting process before it sleeps, µs.
pub const SPIN_WAIT_DEFAULT_US: u64 = 20;
/// Default polling time of chmpx on an active attachment before it sleeps, µs. Long enough
/// to cover a round trip through a local server process, so a steady request stream costs
/// chmpx no wake-up; the poll yields to other tasks and processes at every turn.
pub const LISTENER_SPIN_WAIT_DEFAULT_US: u64 = 50;
/// Frames pushed after an owed, deferred doorbell before it is sent anyway (bounds what a
/// burst waits when the flush comes late).
pub const DEFERRED_DOORBELL_FRAMES_MAX: u32 = 8;
/// Longest polling time accepted, µs (polling longer only burns CPU).
pub const SPIN_WAIT_MAX_US: u64 = 1_000;
/// Default depth of the accept queue.
pub const ACCEPT_QUEUE_DEPTH_DEFAULT: u32 = 8;

const _: () = assert!(DOORBELL_QUEUE_DEPTH_DEFAULT as u64 <= STOCK_MSG_MAX);
const _: () = assert!(ACCEPT_QUEUE_DEPTH_DEFAULT as u64 <= STOCK_MSG_MAX);

/// Settings. Build with `AttachOptions::default()` and change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOptions {
    /// Permission bits of every queue and segment created (0600: owner only).
    pub mode: u32,
    /// Largest message body, bytes. Both sides must agree; chmpx refuses an attachment whose
    /// limit exceeds its own.
    pub body_size_max: usize,
    /// `mq_maxmsg` of each per-attachment doorbell queue.
    pub doorbell_queue_depth: u32,
    /// `mq_maxmsg` of the accept queue.
    pub accept_queue_depth: u32,
    /// Default time a request waits for its response (CHMPX's MQRWTIMEOUT), ms.
    pub rw_timeout_ms: u64,
    /// Time `connect` keeps trying to reach chmpx before it gives up, ms.
    pub connect_timeout_ms: u64,
    /// Interval between hellos while chmpx does not answer, ms.
    pub hello_retry_interval_ms: u64,
    /// How often a waiting side checks that its peer still lives, ms. Bounds how long a dead
    /// peer goes unnoticed.
    pub liveness_check_interval_ms: u64,
    /// Re-attach by itself after chmpx restarts (process side).
    pub reattach: bool,
    /// First and longest pause between re-attach attempts, ms.
    pub reattach_backoff_min_ms: u64,
    pub reattach_backoff_max_ms: u64,
    /// How long a waiting process polls its empty ring before it sleeps on its doorbell, µs.
    /// A response that comes back within this time costs no doorbell and no wake-up on
    /// either side; 0 disables polling.
    pub spin_wait_us: u64,
    /// How long chmpx polls an attachment's empty ring after it got messages, before it
    /// sleeps on the doorbell, µs. Only after activity, so idle attachments cost nothing.
    pub listener_spin_wait_us: u64,
    /// Requests and events buffered on the process side before it stops reading its ring
    /// (which then pushes back on chmpx).
    pub incoming_queue_max: usize,
    /// Process side: a doorbell that a push owes chmpx is not sent at once but when the
    /// process calls [`crate::attach::flush_deferred_doorbells`] (a tokio runtime's
    /// `on_thread_park` hook: when a worker runs out of tasks), or after
    /// [`DEFERRED_DOORBELL_FRAMES_MAX`] frames, so that the requests of one burst wake chmpx
    /// once. Only for a process that installs such a flush; off by default.
    pub defer_doorbell: bool,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            mode: 0o600,
            body_size_max: BODY_SIZE_MAX_DEFAULT_BYTES,
            doorbell_queue_depth: DOORBELL_QUEUE_DEPTH_DEFAULT,
            accept_queue_depth: ACCEPT_QUEUE_DEPTH_DEFAULT,
            rw_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            hello_retry_interval_ms: 200,
            liveness_check_interval_ms: 50,
            reattach: true,
            reattach_backoff_min_ms: 10,
            reattach_backoff_max_ms: 500,
            spin_wait_us: SPIN_WAIT_DEFAULT_US,
            listener_spin_wait_us: LISTENER_SPIN_WAIT_DEFAULT_US,
            incoming_queue_max: 4096,
            defer_doorbell: false,
        }
    }
}

impl AttachOptions {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), AttachError> {
        let bad = |what: String| Err(AttachError::InvalidOptions(what));
        if self.mode & !0o777 != 0 {
            return bad(format!("mode {:o} has bits beyond 0777", self.mode));
        }
        if self.body_size_max == 0 || self.body_size_max > BODY_SIZE_MAX_CEILING_BYTES {
            return bad(format!(
                "body_size_max {} must be 1..={BODY_SIZE_MAX_CEILING_BYTES}",
                self.body_size_max
            ));
        }
        if self.doorbell_queue_depth == 0 || self.accept_queue_depth == 0 {
            return bad("queue depths must be at least 1".to_string());
        }
        if self.spin_wait_us > SPIN_WAIT_MAX_US || self.listener_spin_wait_us > SPIN_WAIT_MAX_US {
            return bad(format!("spin waits must be at most {SPIN_WAIT_MAX_US} µs"));
        }
        if self.liveness_check_interval_ms == 0 || self.hello_retry_interval_ms == 0 {
            return bad("intervals must be at least 1 ms".to_string());
        }
        if self.reattach_backoff_min_ms == 0
            || self.reattach_backoff_min_ms > self.reattach_backoff_max_ms
        {
            return bad("reattach backoff must satisfy 0 < min <= max".to_string());
        }
        Ok(())
    }

    /// Capacity of each ring, bytes: room for the largest message, rounded up to a power of
    /// two.
    pub fn ring_capacity_bytes(&self) -> usize {
        framed_len(ENVELOPE_HEADER_BYTES + self.body_size_max)
            .next_power_of_two()
            .max(RING_CAPACITY_MIN_BYTES)
    }

    pub(crate) fn rw_timeout(&self) -> Duration {
        Duration::from_millis(self.rw_timeout_ms)
    }

    pub(crate) fn liveness_interval(&self) -> Duration {
        Duration::from_millis(self.liveness_check_interval_ms)
    }
}

/// Parses a polling time given on a command line (`--attach-spin-us` of chmpx, dkc-server,
/// dkc-memcached and dkc-local), µs, at most [`SPIN_WAIT_MAX_US`].
pub fn parse_spin_us(s: &str) -> Result<u64, String> {
    let us: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of microseconds (0 = no polling)"))?;
    if us > SPIN_WAIT_MAX_US {
        return Err(format!(
            "{us} µs is more than {SPIN_WAIT_MAX_US} µs; polling longer only burns CPU"
        ));
    }
    Ok(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_times_from_the_command_line_are_bounded() {
        assert_eq!(parse_spin_us("0"), Ok(0));
        assert_eq!(parse_spin_us("50"), Ok(50));
        assert_eq!(
            parse_spin_us(&SPIN_WAIT_MAX_US.to_string()),
            Ok(SPIN_WAIT_MAX_US)
        );
        let over = parse_spin_us(&(SPIN_WAIT_MAX_US + 1).to_string()).unwrap_err();
        assert!(over.contains("more than"), "{over}");
        for bad in ["", "-1", "20us", "x"] {
            let e = parse_spin_us(bad).unwrap_err();
            assert!(e.contains("microseconds"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn defaults_are_valid_and_ring_holds_the_largest_body() {
        let o = AttachOptions::default();
        o.validate().unwrap();
        assert!(o.ring_capacity_bytes() >= framed_len(ENVELOPE_HEADER_BYTES + (1 << 20)));
        assert_eq!(o.ring_capacity_bytes(), 2 << 20);
        let bigger = AttachOptions {
            body_size_max: 8 << 20,
            ..o.clone()
        };
        assert!(bigger.ring_capacity_bytes() >= 8 << 20);
        assert!(AttachOptions {
            mode: 0o4777,
            ..o.clone()
        }
        .validate()
        .is_err());
        assert!(AttachOptions {
            body_size_max: 0,
            ..o
        }
        .validate()
        .is_err());
    }
}
