//! Retries with exponential backoff and full jitter.
//!
//! Only failures that a repeat could cure are retried ([`Error::is_retryable`]:
//! unreachable or stalled servers, `503`, `409`), and only by operations that
//! are safe to repeat: every master call is, because a failed `PUT` stores
//! nothing, a repeated `DELETE` or `UNLINK` of a key already gone is
//! recognised, and reads change nothing. A `PUT` whose body is a one-shot
//! stream cannot be re-sent and is attempted once.

use crate::error::Error;
use rand::Rng;
use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub attempts: u32,
    /// The backoff cap before the first retry; it doubles with each retry.
    pub initial_backoff: Duration,
    /// The backoff never exceeds this.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 10 attempts, 100 ms doubling to at most 5 s: about 20 s of trying in
    /// all, enough to ride out a master restart.
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn never() -> RetryPolicy {
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The upper bound of the wait before retry number `retry` (1-based):
    /// `initial × 2^(retry-1)`, capped.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(20);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// The wait before retry number `retry`: uniformly random up to the
    /// ceiling ("full jitter"), so that many clients that failed together
    /// do not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        if ceiling.is_zero() {
            return ceiling;
        }
        rand::thread_rng().gen_range(Duration::ZERO..=ceiling)
    }

    /// Whether `error` after attempt number `attempt` (1-based) deserves
    /// another try.
    pub fn should_retry(&self, attempt: u32, error: &Error) -> bool {
        attempt < self.attempts && error.is_retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let p = RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
        };
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(400));
        assert_eq!(p.ceiling(4), Duration::from_millis(700));
        assert_eq!(p.ceiling(60), Duration::from_millis(700));
        for retry in 1..10 {
            assert!(p.backoff(retry) <= p.ceiling(retry));
        }
        let unavailable = Error::Unavailable { message: "x".into() };
        assert!(p.should_retry(4, &unavailable));
        assert!(!p.should_retry(5, &unavailable), "attempts are bounded");
        assert!(!p.should_retry(1, &Error::NotFound { key: "/k".into() }));
        assert!(!RetryPolicy::never().should_retry(1, &unavailable));
    }
}
