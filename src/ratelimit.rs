//! Rate limits (SPEC §7): token buckets per caller and per organization,
//! held in this process's memory.
//!
//! A bucket holds up to `burst` tokens (twice the rate) and refills at
//! `rate` tokens a second; a call takes one token or is refused with the
//! time until one is back. Buckets of keys that went quiet are dropped once
//! they would be full again, so memory follows the keys active in the last
//! couple of seconds, not every key ever seen.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::domain::Error;
use crate::domain::error::RateLimited;

/// Independent locks, so concurrent calls of different keys rarely wait.
const SHARDS: usize = 32;
/// A shard this large is swept for idle buckets before it grows further.
const SWEEP_AT: usize = 4_096;

/// Which limit refused a call (also a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Caller,
    Organization,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Caller => "caller",
            Scope::Organization => "organization",
        }
    }
}

/// The state of one bucket after a call, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Tokens a full bucket holds.
    pub limit: u64,
    /// Whole tokens left after this call.
    pub remaining: u64,
    /// Seconds until the bucket is full again (rounded up).
    pub reset_secs: u64,
}

struct Shard<K> {
    buckets: HashMap<K, Bucket>,
    /// Size at which the next sweep runs: doubled when a sweep frees
    /// little (every key is busy), so a sweep stays amortized O(1).
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets for one kind of key.
pub struct Limiter<K> {
    /// Tokens added per second.
    rate: f64,
    /// Tokens a bucket holds at most.
    burst: f64,
    shards: Vec<Mutex<Shard<K>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `rate` calls a second, in bursts of up to twice that; `None` for a
    /// rate of 0 (no limit).
    pub fn new(rate: f64) -> Option<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        Some(Self {
            rate,
            burst: (rate * 2.0).max(1.0),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        sweep_at: SWEEP_AT,
                    })
                })
                .collect(),
            hasher: Default::default(),
        })
    }

    /// Takes a token for `key` at `now`: the quota left, or how long until
    /// a token is back.
    pub fn take(&self, key: &K, now: Instant) -> Result<Quota, (Quota, Duration)> {
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A poisoned shard only means another call panicked mid-update of
        // plain numbers; the map is still usable.
        let mut shard = match self.shards[shard].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if shard.buckets.len() >= shard.sweep_at && !shard.buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            shard
                .buckets
                .retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
            let kept = shard.buckets.len();
            shard.sweep_at = (kept * 2).max(SWEEP_AT);
        }
        let bucket = shard.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        let taken = bucket.tokens >= 1.0;
        if taken {
            bucket.tokens -= 1.0;
        }
        let quota = Quota {
            limit: self.burst as u64,
            remaining: bucket.tokens.max(0.0) as u64,
            reset_secs: ((self.burst - bucket.tokens) / self.rate).ceil().max(0.0) as u64,
        };
        if taken {
            Ok(quota)
        } else {
            let wait = Duration::from_secs_f64(((1.0 - bucket.tokens) / self.rate).max(0.001));
            Err((quota, wait))
        }
    }

    /// Buckets held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.buckets.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The configured limits, in calls per second; 0 turns one off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitConfig {
    pub caller: f64,
    pub organization: f64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            caller: 1_000.0,
            organization: 10_000.0,
        }
    }
}

/// Both limits of a server.
pub struct RateLimits {
    caller: Option<Limiter<String>>,
    organization: Option<Limiter<Uuid>>,
}

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            caller: Limiter::new(config.caller),
            organization: Limiter::new(config.organization),
        }
    }

    /// No limits at all (command-line tools).
    pub fn off() -> Self {
        Self {
            caller: None,
            organization: None,
        }
    }

    /// Whether calls are charged to organizations at all.
    pub fn limits_organizations(&self) -> bool {
        self.organization.is_some()
    }

    /// Charges a call to the caller (by the email their token carries).
    /// `Ok(None)` when the caller limit is off.
    pub fn caller(&self, email: &str) -> Result<Option<Quota>, Error> {
        match &self.caller {
            None => Ok(None),
            Some(limiter) => limiter
                .take(&email.to_owned(), Instant::now())
                .map(Some)
                .map_err(|(quota, wait)| refused(Scope::Caller, quota, wait)),
        }
    }

    /// Charges a call to an organization.
    pub fn organization(&self, org: Uuid) -> Result<(), Error> {
        match &self.organization {
            None => Ok(()),
            Some(limiter) => limiter
                .take(&org, Instant::now())
                .map(|_| ())
                .map_err(|(quota, wait)| refused(Scope::Organization, quota, wait)),
        }
    }
}

fn refused(scope: Scope, quota: Quota, wait: Duration) -> Error {
    let (message, reason) = match scope {
        Scope::Caller => ("too many calls from this caller; retry later", "RATE_LIMITED"),
        Scope::Organization => (
            "too many calls for this organization; retry later",
            "ORG_RATE_LIMITED",
        ),
    };
    Error::new(crate::domain::ErrorKind::ResourceExhausted, reason, message)
        .with("limit", scope.as_str())
        .rate_limited(RateLimited {
            scope: scope.as_str(),
            limit: quota.limit,
            remaining: quota.remaining,
            reset_secs: quota.reset_secs,
            retry_after: wait,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_it_refills() {
        let limiter = Limiter::<u32>::new(10.0).expect("limit on");
        let start = Instant::now();
        for i in 0..20 {
            let quota = limiter.take(&1, start).expect("within the burst");
            assert_eq!(quota.limit, 20);
            assert_eq!(quota.remaining, 19 - i);
        }
        let (quota, wait) = limiter.take(&1, start).expect_err("burst spent");
        assert_eq!(quota.remaining, 0);
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert!(limiter.take(&2, start).is_ok());
        // A tenth of a second later one token is back, and only one.
        let later = start + Duration::from_millis(100);
        assert!(limiter.take(&1, later).is_ok());
        assert!(limiter.take(&1, later).is_err());
        // After two seconds the bucket is full again.
        let full = start + Duration::from_secs(3);
        let quota = limiter.take(&1, full).expect("refilled");
        assert_eq!(quota.remaining, 19);
    }

    #[test]
    fn zero_turns_a_limit_off() {
        assert!(Limiter::<u32>::new(0.0).is_none());
        let limits = RateLimits::new(RateLimitConfig {
            caller: 0.0,
            organization: 0.0,
        });
        for _ in 0..10_000 {
            assert_eq!(limits.caller("a@example.com"), Ok(None));
            assert_eq!(limits.organization(Uuid::nil()), Ok(()));
        }
    }

    #[test]
    fn idle_buckets_are_swept() {
        let limiter = Limiter::<u32>::new(1_000.0).expect("limit on");
        let n = (SWEEP_AT * SHARDS * 2) as u32;
        let start = Instant::now();
        for key in 0..n {
            let _ = limiter.take(&key, start);
        }
        // All busy: nothing could be dropped.
        assert_eq!(limiter.len(), n as usize);
        // Later those buckets are full again, and new keys sweep them away:
        // without sweeping 3n buckets would be held.
        let later = start + Duration::from_secs(10);
        for key in n..3 * n {
            let _ = limiter.take(&key, later);
        }
        assert!(
            limiter.len() < (5 * n / 2) as usize,
            "{} buckets kept",
            limiter.len()
        );
        assert!(limiter.len() >= (2 * n) as usize, "busy buckets were dropped");
    }

    #[test]
    fn a_refusal_says_when_to_retry() {
        let limits = RateLimits::new(RateLimitConfig {
            caller: 1.0,
            organization: 0.0,
        });
        assert!(limits.caller("a@example.com").is_ok());
        assert!(limits.caller("a@example.com").is_ok());
        let e = limits.caller("a@example.com").expect_err("over the limit");
        assert_eq!(e.reason, "RATE_LIMITED");
        let info = e.rate_limited.expect("rate limit details");
        assert_eq!(info.limit, 2);
        assert_eq!(info.remaining, 0);
        assert!(info.retry_after > Duration::from_millis(900));
    }
}
