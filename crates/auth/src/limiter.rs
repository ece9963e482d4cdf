//! Failed-login rate limiting, per identity and per client address.
//!
//! A key that failed `max_failures` times within `window` is refused
//! until the oldest of those failures leaves the window. In memory: a
//! restart forgets, which is acceptable for slowing down guessing.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            max_failures: max_failures.max(1) as usize,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when any key is over its limit.
    pub fn check(&self, keys: &[String]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for k in keys {
            if let Some(q) = map.get_mut(k) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    q.pop_front();
                }
                if q.len() >= self.max_failures
                    && let Some(oldest) = q.front()
                {
                    wait = wait.max(self.window - now.duration_since(*oldest));
                }
            }
        }
        if wait > Duration::ZERO {
            Err(wait.max(Duration::from_secs(1)))
        } else {
            Ok(())
        }
    }

    /// Record a failure for every key.
    pub fn fail(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Bounded memory under a spray of addresses: forget the idle.
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        for k in keys {
            let q = map.entry(k.clone()).or_default();
            q.push_back(now);
            while q.len() > self.max_failures {
                q.pop_front();
            }
        }
    }

    /// Forget failures of `key` (after a successful login).
    pub fn succeed(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engages_after_max_failures_per_key() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let keys = vec!["id:bob".to_string(), "ip:10.0.0.1".to_string()];
        for _ in 0..3 {
            assert!(l.check(&keys).is_ok());
            l.fail(&keys);
        }
        let wait = l.check(&keys).unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        // Another identity from the same address is refused too…
        assert!(l.check(&["id:eve".into(), "ip:10.0.0.1".into()]).is_err());
        // …and another address for the same identity.
        assert!(l.check(&["id:bob".into(), "ip:10.0.0.2".into()]).is_err());
        assert!(l.check(&["id:eve".into(), "ip:10.0.0.2".into()]).is_ok());
        l.succeed("id:bob");
        assert!(l.check(&["id:bob".into()]).is_ok());
    }

    #[test]
    fn failures_leave_the_window() {
        const WINDOW: Duration = Duration::from_millis(50);
        let l = LoginLimiter::new(1, WINDOW);
        // A loaded machine may stall longer than the window between the
        // failure and the check: the refusal is asserted only for a check
        // known to come within it (a fresh key per try).
        for i in 0..20 {
            let key = vec![format!("k{i}")];
            let t = Instant::now();
            l.fail(&key);
            let refused = l.check(&key).is_err();
            if t.elapsed() >= WINDOW {
                continue;
            }
            assert!(refused, "let through within the window");
            std::thread::sleep(WINDOW + Duration::from_millis(10));
            assert!(l.check(&key).is_ok(), "still refused after the window");
            return;
        }
        panic!("no check came within {WINDOW:?} of its failure in 20 tries");
    }
}
