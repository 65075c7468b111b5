//! Per-key limits: requests open at once (`--max-concurrent-per-key`) and requests per minute
//! (`--rate-limit-per-key`, a token bucket holding a minute's worth). Over either, 429 with
//! `Retry-After`. Keys are known by name, so the tables hold one entry per name in the keys file.

use super::keys::KeyName;
use crate::error::ApiError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a 429 for too many open requests asks the client to wait.
const CONCURRENCY_RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct KeyLimits {
    /// 0: unlimited.
    max_concurrent: u32,
    /// Requests per minute; 0: unlimited.
    per_minute: u32,
    open: Mutex<HashMap<KeyName, Arc<Semaphore>>>,
    buckets: Mutex<HashMap<KeyName, Bucket>>,
}

/// Held while the request is open (its response body included).
pub struct OpenRequest {
    _permit: Option<OwnedSemaphorePermit>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl KeyLimits {
    pub fn new(max_concurrent: u32, per_minute: u32) -> Self {
        Self {
            max_concurrent,
            per_minute,
            open: Mutex::default(),
            buckets: Mutex::default(),
        }
    }

    /// Admits one request of `key`, or says how long to wait.
    pub fn admit(&self, key: &KeyName) -> Result<OpenRequest, ApiError> {
        let open = self.open_request(key)?;
        self.take_token(key, Instant::now())?;
        Ok(open)
    }

    fn open_request(&self, key: &KeyName) -> Result<OpenRequest, ApiError> {
        if self.max_concurrent == 0 {
            return Ok(OpenRequest { _permit: None });
        }
        let semaphore = {
            let mut open = self.open.lock().expect("limits lock");
            let max = self.max_concurrent as usize;
            Arc::clone(
                open.entry(Arc::clone(key))
                    .or_insert_with(|| Arc::new(Semaphore::new(max))),
            )
        };
        match semaphore.try_acquire_owned() {
            Ok(permit) => Ok(OpenRequest {
                _permit: Some(permit),
            }),
            Err(_) => Err(ApiError::KeyLimited {
                limit: "concurrent requests",
                retry_after: CONCURRENCY_RETRY_AFTER,
            }),
        }
    }

    fn take_token(&self, key: &KeyName, now: Instant) -> Result<(), ApiError> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().expect("limits lock");
        let bucket = buckets.entry(Arc::clone(key)).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let refill = now.saturating_duration_since(bucket.updated).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / per_second).ceil().max(1.0);
        Err(ApiError::KeyLimited {
            limit: "requests per minute",
            retry_after: Duration::from_secs(wait as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(result: Result<impl Sized, ApiError>) -> Option<Duration> {
        match result {
            Err(ApiError::KeyLimited { retry_after, .. }) => Some(retry_after),
            _ => None,
        }
    }

    #[test]
    fn a_minute_s_worth_then_a_wait_per_key() {
        let limits = KeyLimits::new(0, 2);
        let (a, b): (KeyName, KeyName) = ("a".into(), "b".into());
        let now = Instant::now();
        assert!(limits.take_token(&a, now).is_ok());
        assert!(limits.take_token(&a, now).is_ok());
        assert_eq!(
            retry_after(limits.take_token(&a, now)),
            Some(Duration::from_secs(30))
        );
        assert!(limits.take_token(&b, now).is_ok());
        assert!(limits.take_token(&a, now + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn open_requests_are_bounded_until_one_ends() {
        let limits = KeyLimits::new(1, 0);
        let a: KeyName = "a".into();
        let first = limits.admit(&a).expect("the first is admitted");
        assert_eq!(retry_after(limits.admit(&a)), Some(CONCURRENCY_RETRY_AFTER));
        assert!(limits.admit(&"b".into()).is_ok());
        drop(first);
        assert!(limits.admit(&a).is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let limits = KeyLimits::new(0, 0);
        let a: KeyName = "a".into();
        let open: Vec<_> = (0..1000).map(|_| limits.admit(&a)).collect();
        assert!(open.iter().all(Result::is_ok));
    }
}
