//! Per-client token buckets for ingest. Pure logic: the caller passes the
//! time, so tests drive it with a held clock. No HTTP, no I/O.
//!
//! Each client (an IPv4 address, or the /64 network of an IPv6 address, since
//! one host usually holds a whole /64) has a bucket of `burst` tokens that
//! refills at `rate` tokens per second; a request takes one token or is
//! refused with the time until the next token.
//!
//! Memory is bounded: at most `max_clients` buckets are kept. A bucket that
//! has refilled completely is the same as no bucket, so it is dropped when
//! room is needed; if every bucket is still in use, the fullest half of the
//! shard is dropped. Those clients start again with a full bucket, which
//! gives each the tokens it lacked: the fullest lack the fewest, and a
//! client being limited, whose bucket is empty, goes last: a flood of new
//! addresses lifts no one's limit unless each of them spends its own whole
//! burst first.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::str::FromStr;

use parking_lot::Mutex;

const SHARDS: usize = 16;

/// Default bound on the number of tracked clients.
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

/// A rate such as `200/s`, `6000/m` or `100000/h`; the burst equals the
/// count (`200/s` allows 200 at once, then 200 per second).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, unit) = s.trim().split_once('/').ok_or_else(|| {
            format!("`{s}` is not a rate; write it as e.g. 200/s, 600/m or 1000/h")
        })?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{count}` is not a whole number of requests"))?;
        if count == 0 {
            return Err("the rate must allow at least one request".into());
        }
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            other => return Err(format!("unknown rate unit `{other}`; use s, m or h")),
        };
        Ok(Rate {
            per_second: f64::from(count) / seconds,
            burst: count,
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s (burst {})", self.per_second, self.burst)
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    fn refilled(self, rate: Rate, now_ms: i64) -> f64 {
        // A clock that steps back refills nothing rather than going negative.
        let elapsed = (now_ms.saturating_sub(self.at_ms)).max(0) as f64 / 1000.0;
        (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst))
    }
}

/// The bucket key: IPv4 address, or IPv6 /64 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6Net(u64),
}

fn client_key(ip: IpAddr) -> ClientKey {
    match ip {
        IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ClientKey::V4(u32::from(v4)),
            None => ClientKey::V6Net((u128::from(v6) >> 64) as u64),
        },
    }
}

/// The token buckets of every client.
pub struct RateLimiter {
    rate: Rate,
    per_shard: usize,
    shards: Vec<Mutex<HashMap<ClientKey, Bucket>>>,
    hasher: RandomState,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate)
            .field("clients", &self.clients())
            .finish()
    }
}

impl RateLimiter {
    pub fn new(rate: Rate, max_clients: usize) -> Self {
        RateLimiter {
            rate,
            per_shard: (max_clients / SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Takes a token for `ip` at `now_ms`, or answers how many whole seconds
    /// (at least 1) until one is available.
    pub fn check(&self, ip: IpAddr, now_ms: i64) -> Result<(), u64> {
        let key = client_key(ip);
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut buckets = shard.lock();
        if !buckets.contains_key(&key) && buckets.len() >= self.per_shard {
            self.make_room(&mut buckets, now_ms);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: f64::from(self.rate.burst),
            at_ms: now_ms,
        });
        let tokens = bucket.refilled(self.rate, now_ms);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            let wait = (1.0 - tokens) / self.rate.per_second;
            Err((wait.ceil() as u64).max(1))
        }
    }

    fn make_room(&self, buckets: &mut HashMap<ClientKey, Bucket>, now_ms: i64) {
        let full = f64::from(self.rate.burst);
        buckets.retain(|_, b| b.refilled(self.rate, now_ms) < full);
        if buckets.len() >= self.per_shard {
            // The fullest half go (room for the newcomer at the least):
            // the `drop`-th most tokens is the line, and ties at it go
            // until `drop` are gone.
            let mut drop = (buckets.len() / 2).max(buckets.len() + 1 - self.per_shard);
            let mut tokens: Vec<f64> = buckets
                .values()
                .map(|b| b.refilled(self.rate, now_ms))
                .collect();
            let (_, &mut line, _) = tokens.select_nth_unstable_by(drop - 1, |a, b| b.total_cmp(a));
            buckets.retain(|_, b| {
                if drop > 0 && b.refilled(self.rate, now_ms) >= line {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// How many clients have a bucket now.
    pub fn clients(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_rates() {
        assert_eq!(
            "200/s".parse::<Rate>().unwrap(),
            Rate {
                per_second: 200.0,
                burst: 200
            }
        );
        assert_eq!("60/m".parse::<Rate>().unwrap().per_second, 1.0);
        assert_eq!("7200/h".parse::<Rate>().unwrap().per_second, 2.0);
        for bad in ["200", "0/s", "x/s", "5/day", "-1/s", "/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let limiter = RateLimiter::new("10/s".parse().unwrap(), 1000);
        let a = ip("192.0.2.1");
        for _ in 0..10 {
            assert!(limiter.check(a, 0).is_ok());
        }
        assert_eq!(limiter.check(a, 0), Err(1));
        // Another client has its own bucket.
        assert!(limiter.check(ip("192.0.2.2"), 0).is_ok());
        // One token every 100 ms.
        assert_eq!(limiter.check(a, 50), Err(1));
        assert!(limiter.check(a, 100).is_ok());
        assert!(limiter.check(a, 100).is_err());
        // Long idle: back to the full burst, never more.
        for _ in 0..10 {
            assert!(limiter.check(a, 60_000).is_ok());
        }
        assert!(limiter.check(a, 60_000).is_err());
    }

    #[test]
    fn retry_after_counts_whole_seconds() {
        let limiter = RateLimiter::new("1/m".parse().unwrap(), 1000);
        let a = ip("192.0.2.1");
        assert!(limiter.check(a, 0).is_ok());
        assert_eq!(limiter.check(a, 0), Err(60));
        assert_eq!(limiter.check(a, 30_500), Err(30));
        assert!(limiter.check(a, 60_000).is_ok());
    }

    #[test]
    fn a_clock_stepping_back_refills_nothing() {
        let limiter = RateLimiter::new("1/s".parse().unwrap(), 1000);
        let a = ip("192.0.2.1");
        assert!(limiter.check(a, 10_000).is_ok());
        assert!(limiter.check(a, 5_000).is_err());
        assert!(limiter.check(a, 10_500).is_err());
        assert!(limiter.check(a, 11_000).is_ok());
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let limiter = RateLimiter::new("2/s".parse().unwrap(), 1000);
        assert!(limiter.check(ip("2001:db8:1:2::1"), 0).is_ok());
        assert!(limiter.check(ip("2001:db8:1:2:ffff::9"), 0).is_ok());
        assert!(limiter.check(ip("2001:db8:1:2::77"), 0).is_err());
        assert!(limiter.check(ip("2001:db8:1:3::1"), 0).is_ok());
        // An IPv4-mapped address is its IPv4 client.
        assert!(limiter.check(ip("192.0.2.9"), 0).is_ok());
        assert!(limiter.check(ip("::ffff:192.0.2.9"), 0).is_ok());
        assert!(limiter.check(ip("192.0.2.9"), 0).is_err());
    }

    #[test]
    fn memory_stays_bounded() {
        let max = 160;
        let limiter = RateLimiter::new("5/s".parse().unwrap(), max);
        for i in 0..100_000u32 {
            let addr = IpAddr::from(i.to_be_bytes());
            let _ = limiter.check(addr, i64::from(i / 1000));
            assert!(limiter.clients() <= max, "{} at {i}", limiter.clients());
        }
    }

    #[test]
    fn a_flood_of_new_clients_does_not_lift_a_limited_clients_limit() {
        // Nothing refills (one clock instant): every eviction is of a
        // bucket in use. The limited client's is empty, each newcomer's
        // has 9 of 10 tokens left, so newcomers go first.
        let limiter = RateLimiter::new("10/s".parse().unwrap(), 2 * SHARDS);
        let limited = ip("198.51.100.1");
        for _ in 0..10 {
            assert!(limiter.check(limited, 0).is_ok());
        }
        for i in 0..10_000u32 {
            assert!(limiter
                .check(IpAddr::from((i + 1).to_be_bytes()), 0)
                .is_ok());
            assert!(limiter.clients() <= 2 * SHARDS);
        }
        assert_eq!(limiter.check(limited, 0), Err(1), "still limited");
    }

    #[test]
    fn idle_refilled_clients_make_room_and_an_active_one_keeps_its_bucket() {
        // Two buckets per shard. Each second one newcomer arrives and the
        // busy client spends the token that second refilled, so when a
        // newcomer lands in a full shard, last second's newcomers are full
        // again and go; the busy client, never full, stays.
        let limiter = RateLimiter::new("1/s".parse().unwrap(), 2 * SHARDS);
        let busy = ip("198.51.100.1");
        for second in 0..1_000u32 {
            let now_ms = i64::from(second) * 1000;
            assert!(limiter.check(busy, now_ms).is_ok(), "second {second}");
            let _ = limiter.check(IpAddr::from((second + 1).to_be_bytes()), now_ms);
            // Had its bucket gone, it would start full again.
            assert_eq!(limiter.check(busy, now_ms), Err(1), "second {second}");
            assert!(limiter.clients() <= 2 * SHARDS);
        }
    }
}
