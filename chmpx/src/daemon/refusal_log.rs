//! [`RefusalLog`]: how the control and metrics ports log the connections they refuse, at most
//! once per [`REFUSAL_LOG_INTERVAL_MS`] each, saying how many went unlogged in between, so a
//! scanner cannot flood the log. The metrics count every refusal.

use std::time::{Duration, Instant};

use super::limits::REFUSAL_LOG_INTERVAL_MS;

/// One port's refusal log rate.
#[derive(Debug)]
pub struct RefusalLog {
    next: Instant,
    unlogged: u64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            next: Instant::now(),
            unlogged: 0,
        }
    }
}

impl RefusalLog {
    /// Whether to log this refusal now; `Some(n)`: `n` refusals went unlogged since the last.
    pub fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if now < self.next {
            self.unlogged += 1;
            return None;
        }
        self.next = now + Duration::from_millis(REFUSAL_LOG_INTERVAL_MS);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::RefusalLog;

    #[test]
    fn the_first_refusal_is_logged_and_the_next_ones_are_counted() {
        let mut log = RefusalLog::default();
        assert_eq!(log.due(), Some(0));
        assert_eq!(log.due(), None);
        assert_eq!(log.due(), None);
        log.next = std::time::Instant::now();
        assert_eq!(
            log.due(),
            Some(2),
            "the interval over: logged, with the two unlogged"
        );
    }
}
