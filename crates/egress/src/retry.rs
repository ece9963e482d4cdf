//! The one retry policy for outbound work: registry requests and blob
//! transfers (transport), blob copies (import), webhook deliveries
//! (assess). Exponential backoff through `backon`, so every caller waits
//! the same way and none hand-rolls a loop of sleeps.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// How hard to try before giving up, and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first one included); at least one is made.
    pub attempts: u32,
    /// Wait before the first retry; doubles each time up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The schedule, for `backon::Retryable::retry`: one delay per retry
    /// (`attempts - 1` of them).
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_factor(2.0)
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
    }

    /// The wait before retry number `retry` (1-based), for retries that are
    /// scheduled rather than awaited in place (a delivery stored with its
    /// next attempt time, a transfer resumed inside a stream); the last
    /// delay of the schedule once past its end.
    pub fn delay(&self, retry: u32) -> Duration {
        // Past 64 doublings any delay has reached its cap.
        let n = retry.clamp(1, 64) as usize;
        ExponentialBuilder::default()
            .with_factor(2.0)
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(n)
            .build()
            .last()
            .unwrap_or(self.base_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::Retryable;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = policy(5);
        let got: Vec<u128> = (1..=5).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 350, 350, 350]);
        assert_eq!(p.delay(0), p.delay(1));
        assert_eq!(p.delay(u32::MAX).as_millis(), 350);
        let schedule: Vec<u128> = p.backoff().build().map(|d| d.as_millis()).collect();
        assert_eq!(schedule, vec![100, 200, 350, 350]);
        assert_eq!(policy(1).backoff().build().count(), 0);
    }

    #[tokio::test]
    async fn retries_transient_failures_only_as_many_times_as_allowed() {
        let policy = |attempts| RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let calls = AtomicU32::new(0);
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), &str>("transient")
        };
        let r = failing
            .retry(policy(3).backoff())
            .sleep(tokio::time::sleep)
            .await;
        assert_eq!((r, calls.load(Ordering::SeqCst)), (Err("transient"), 3));

        calls.store(0, Ordering::SeqCst);
        let r = failing
            .retry(policy(3).backoff())
            .sleep(tokio::time::sleep)
            .when(|e| *e != "transient")
            .await;
        assert_eq!((r, calls.load(Ordering::SeqCst)), (Err("transient"), 1));
    }
}
