//! Command-line flags, each with an environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Where synced counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A redb database in the data directory (one edge).
    Embedded,
    /// A shared Redis or Redis Cluster (many edges).
    Redis,
}

/// When ingest answers 202, relative to the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// After the batch's record is fsynced (group commit): a crash of the
    /// process or the machine loses no acknowledged event.
    Strict,
    /// At once; the record is written in the background with the others
    /// of the same 2 ms and fsynced at most every 100 ms. A crash of the
    /// process loses what was not yet written (up to 2 ms), a crash of the
    /// machine what was not yet fsynced (up to 100 ms more).
    Relaxed,
}

use crate::keys::Secret;
use crate::proxies::Cidr;
use crate::ratelimit::Rate;
use crate::signing::SigningSecrets;

/// The glimpse edge server: accepts impression batches, counts them, serves
/// the counts.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "glimpse-server",
    version,
    about,
    after_help = "To issue a token for a signed ad: glimpse-server sign-ad --help"
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "GLIMPSE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory of the embedded store.
    #[arg(long, env = "GLIMPSE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// When ingest answers 202: `strict` once the batch is fsynced to the
    /// write-ahead log (nothing acknowledged is lost in a crash), `relaxed` at
    /// once (lower latency; a crash of the process loses the batches not yet
    /// written, a crash of the machine up to 100 ms more).
    #[arg(long, env = "GLIMPSE_DURABILITY", value_enum, default_value = "strict")]
    pub durability: Durability,

    /// How often pending counts are written to the store (e.g. 500ms, 5s, 1m).
    #[arg(long, env = "GLIMPSE_SYNC_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub sync_interval: Duration,

    /// API keys for the stats routes, comma separated. Without any, the stats
    /// routes answer loopback clients only.
    #[arg(
        long,
        env = "GLIMPSE_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<Secret>,

    /// Static site served at `/` when the directory exists.
    #[arg(long, env = "GLIMPSE_WWW_DIR", default_value = "www")]
    pub www_dir: PathBuf,

    /// Built SDK served at `/sdk/` when the directory exists.
    #[arg(long, env = "GLIMPSE_SDK_DIR", default_value = "sdk/pkg")]
    pub sdk_dir: PathBuf,

    /// File of API keys scoped to ad-id prefixes, one `<key> <scope>` per
    /// line (`*` or `acme-,globex-`). Adds to `--api-keys`.
    #[arg(long, env = "GLIMPSE_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Per-client rate limit on ingest, e.g. `200/s`, `600/m` (burst = the
    /// count). Off when not given.
    #[arg(long, env = "GLIMPSE_RATE_LIMIT")]
    pub rate_limit: Option<Rate>,

    /// Networks of proxies whose `X-Forwarded-For` is believed, comma
    /// separated CIDRs (e.g. `10.0.0.0/8,192.168.1.7`). Nobody else's is.
    #[arg(long, env = "GLIMPSE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,

    /// Requests served at once; beyond it the edge answers 503 at once
    /// (health probes and metrics excepted). 0 turns the limit off.
    #[arg(long, env = "GLIMPSE_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// Time a request body has to arrive in full (e.g. 10s, 500ms).
    #[arg(long, env = "GLIMPSE_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// Time a request's line and headers have to arrive in full (e.g. 10s);
    /// a connection that is slower, or idle that long between requests, is
    /// closed.
    #[arg(long, env = "GLIMPSE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,

    /// Serve `/metrics` on this address instead of the main one (there
    /// without a key: bind it to a private interface).
    #[arg(long, env = "GLIMPSE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// The store synced counts go to.
    #[arg(long, env = "GLIMPSE_STORE", value_enum, default_value = "embedded")]
    pub store: StoreKind,

    /// Redis to sync to with `--store redis`: `redis://[:PASSWORD@]HOST:PORT[/DB]`,
    /// or `rediss://` for TLS.
    #[arg(
        long,
        env = "GLIMPSE_REDIS_URL",
        hide_env_values = true,
        conflicts_with = "redis_cluster_nodes"
    )]
    pub redis_url: Option<String>,

    /// Redis Cluster nodes to start from with `--store redis`, comma separated:
    /// `host:port` or full `redis://` / `rediss://` URLs.
    #[arg(
        long,
        env = "GLIMPSE_REDIS_CLUSTER_NODES",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub redis_cluster_nodes: Vec<String>,

    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "GLIMPSE_REDIS_PREFIX", default_value = "glimpse:")]
    pub redis_prefix: String,

    /// Days after the start of a day when its Redis keys expire; at least 4,
    /// so a day's keys outlive the last events and syncs that reach them.
    #[arg(long, env = "GLIMPSE_RETENTION_DAYS", default_value_t = 400,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retention_days: u32,

    /// Days after the start of a day when the visitor sketches of its hours
    /// are deleted (in both stores; hourly counters are kept as long as the
    /// day's). A day in a time zone other than UTC is the union of its UTC
    /// hours, so its unique visitors are answered for this many days, and
    /// `null` after. At least 4; a value above --retention-days is read as
    /// --retention-days.
    #[arg(long, env = "GLIMPSE_HOURLY_RETENTION_DAYS", default_value_t = DEFAULT_HOURLY_RETENTION_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub hourly_retention_days: u32,

    /// Ingest answers 503 with Retry-After while the pending (not yet synced)
    /// counts hold more than this many bytes of memory.
    #[arg(long, env = "GLIMPSE_MAX_PENDING_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_pending_bytes: u64,

    /// Ingest answers 503 with Retry-After while the write-ahead log holds
    /// more than this many bytes on disk (batches not yet in the store, e.g.
    /// while the store is down). The default leaves most of the shipped
    /// 1 GiB data volume to the store's files.
    #[arg(long, env = "GLIMPSE_MAX_LOG_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_log_bytes: u64,

    /// How long stats read from Redis are reused (0s turns the cache off).
    #[arg(long, env = "GLIMPSE_STATS_CACHE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub stats_cache: Duration,

    /// Require signed ads: every event must carry a token
    /// (`<expiry>.<hex HMAC-SHA256(secret, ad_id + "." + expiry)>`) issued
    /// with one of these secrets; `glimpse-server sign-ad` issues one. Repeat
    /// the flag or separate secrets with commas to rotate: the first signs,
    /// all verify. Each is at least 32 bytes. Off when not given.
    #[arg(
        long,
        env = "GLIMPSE_AD_SIGNING_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub ad_signing_secret: Vec<Secret>,

    /// Count events from automated browsers (HeadlessChrome, WebDriver) as
    /// impressions instead of as invalid traffic, for test suites that run
    /// headless browsers. Crawlers are invalid traffic either way.
    /// The variable takes `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
    #[arg(long, env = "GLIMPSE_COUNT_AUTOMATION",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub count_automation: bool,
}

/// `--hourly-retention-days` when not given.
pub const DEFAULT_HOURLY_RETENTION_DAYS: u32 = 35;

impl Config {
    /// The rules between flags that clap cannot check on its own; the error
    /// names the flag and never shows a secret.
    pub fn validate(&self) -> Result<(), String> {
        self.ad_signing()?;
        let min = crate::store::redis::plan::MIN_RETENTION_DAYS;
        if self.retention_days < min {
            return Err(format!(
                "--retention-days {} cannot hold the days that still receive counts: \
                 events are accepted up to 48 h late and a sync may land up to 23 h after \
                 that, so a day's keys must live at least {min} days",
                self.retention_days
            ));
        }
        if self.hourly_retention_days < min {
            return Err(format!(
                "--hourly-retention-days {} cannot hold the days that still receive counts: \
                 an hour's sketch must live at least {min} days",
                self.hourly_retention_days
            ));
        }
        Ok(())
    }

    /// Days an hour's visitor sketch is kept: `--hourly-retention-days`,
    /// never longer than the day's own keys.
    pub fn hourly_sketch_days(&self) -> u32 {
        self.hourly_retention_days.min(self.retention_days)
    }

    /// The secrets of `--ad-signing-secret`, `None` without the flag.
    pub fn ad_signing(&self) -> Result<Option<SigningSecrets>, String> {
        SigningSecrets::from_flag(&self.ad_signing_secret)
            .map_err(|e| format!("--ad-signing-secret: {e}"))
    }
}

/// A duration of more than zero (`500ms`, `10s`).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// `glimpse-server sign-ad`: prints a token for `data-ad-token`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "glimpse-server sign-ad",
    bin_name = "glimpse-server sign-ad",
    about = "Prints a token for an ad slot's `data-ad-token`, for an edge run with --ad-signing-secret."
)]
pub struct SignAd {
    /// The edge's `--ad-signing-secret`: with several (comma separated),
    /// the first signs.
    #[arg(
        long,
        env = "GLIMPSE_AD_SIGNING_SECRET",
        value_delimiter = ',',
        hide_env_values = true,
        required = true
    )]
    pub secret: Vec<Secret>,

    /// The ad id the token is for (the slot's `data-ad-id`).
    #[arg(long)]
    pub ad_id: String,

    /// How long the token stays valid (e.g. 24h, 7d).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_durations() {
        let c = Config::try_parse_from(["glimpse-server"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.sync_interval, Duration::from_secs(5));
        assert!(c.api_keys.is_empty());
        assert_eq!(c.durability, Durability::Strict);
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        for bad in ["0s", "never"] {
            assert!(
                Config::try_parse_from(["glimpse-server", "--header-read-timeout", bad]).is_err()
            );
        }
        let relaxed =
            Config::try_parse_from(["glimpse-server", "--durability", "relaxed"]).unwrap();
        assert_eq!(relaxed.durability, Durability::Relaxed);
        assert!(Config::try_parse_from(["glimpse-server", "--durability", "maybe"]).is_err());
        let c = Config::try_parse_from([
            "glimpse-server",
            "--sync-interval",
            "500ms",
            "--api-keys",
            "k1,k2",
        ])
        .unwrap();
        assert_eq!(c.sync_interval, Duration::from_millis(500));
        assert_eq!(c.api_keys, vec![Secret::new("k1"), Secret::new("k2")]);
        assert!(!format!("{c:?}").contains("k1"));
        assert!(Config::try_parse_from(["glimpse-server", "--sync-interval", "soon"]).is_err());
    }

    #[test]
    fn signing_flags() {
        let new = "n".repeat(32);
        let old = "o".repeat(40);
        let c = Config::try_parse_from(["glimpse-server"]).unwrap();
        assert!(c.ad_signing_secret.is_empty());
        assert_eq!(c.validate(), Ok(()));
        let listed = format!("{new},{old}");
        let repeated = [
            "glimpse-server",
            "--ad-signing-secret",
            &new,
            "--ad-signing-secret",
            &old,
        ];
        for c in [
            Config::try_parse_from(["glimpse-server", "--ad-signing-secret", &listed]).unwrap(),
            Config::try_parse_from(repeated).unwrap(),
        ] {
            assert_eq!(
                c.ad_signing_secret,
                [Secret::new(new.as_str()), Secret::new(old.as_str())]
            );
            assert_eq!(c.validate(), Ok(()));
            assert!(!format!("{c:?}").contains(&new));
        }
        let short =
            Config::try_parse_from(["glimpse-server", "--ad-signing-secret", "s3"]).unwrap();
        let e = short.validate().unwrap_err();
        assert!(
            e.starts_with("--ad-signing-secret: signing secret 1 of 1 is 2 bytes"),
            "{e}"
        );
        let s = SignAd::try_parse_from([
            "sign-ad", "--secret", &listed, "--ad-id", "ad-1", "--ttl", "1h",
        ])
        .unwrap();
        assert_eq!(
            (s.ad_id.as_str(), s.ttl, s.secret.len()),
            ("ad-1", Duration::from_secs(3600), 2)
        );
        assert!(SignAd::try_parse_from(["sign-ad", "--secret", "s3", "--ttl", "1h"]).is_err());
    }

    #[test]
    fn count_automation_flag() {
        let c = Config::try_parse_from(["glimpse-server"]).unwrap();
        assert!(!c.count_automation);
        let c = Config::try_parse_from(["glimpse-server", "--count-automation"]).unwrap();
        assert!(c.count_automation);
    }

    #[test]
    fn redis_flags() {
        let c = Config::try_parse_from(["glimpse-server"]).unwrap();
        assert_eq!(c.store, StoreKind::Embedded);
        assert_eq!(c.redis_prefix, "glimpse:");
        assert_eq!(c.retention_days, 400);
        assert_eq!(c.max_pending_bytes, 256 * 1024 * 1024);
        assert_eq!(c.max_log_bytes, 256 * 1024 * 1024);
        assert_eq!(c.stats_cache, Duration::from_secs(1));
        let c = Config::try_parse_from([
            "glimpse-server",
            "--store",
            "redis",
            "--redis-cluster-nodes",
            "10.0.0.1:7000,10.0.0.2:7000",
            "--redis-prefix",
            "t1:",
            "--retention-days",
            "30",
            "--stats-cache",
            "0s",
        ])
        .unwrap();
        assert_eq!(c.store, StoreKind::Redis);
        assert_eq!(c.redis_cluster_nodes, ["10.0.0.1:7000", "10.0.0.2:7000"]);
        assert_eq!((c.redis_prefix.as_str(), c.retention_days), ("t1:", 30));
        assert_eq!(c.stats_cache, Duration::ZERO);
        assert!(Config::try_parse_from([
            "glimpse-server",
            "--redis-url",
            "redis://a/",
            "--redis-cluster-nodes",
            "b:1"
        ])
        .is_err());
        assert!(Config::try_parse_from(["glimpse-server", "--retention-days", "0"]).is_err());
    }

    #[test]
    fn retention_shorter_than_the_accepted_window_is_refused() {
        let with = |days: &str| {
            Config::try_parse_from(["glimpse-server", "--retention-days", days])
                .unwrap()
                .validate()
        };
        for short in ["1", "2", "3"] {
            let e = with(short).unwrap_err();
            assert!(
                e.starts_with(&format!("--retention-days {short} cannot hold"))
                    && e.contains("at least 4 days"),
                "{e}"
            );
        }
        assert_eq!(with("4"), Ok(()));
        assert_eq!(with("400"), Ok(()));
        let hourly = |days: &str| {
            Config::try_parse_from(["glimpse-server", "--hourly-retention-days", days])
                .unwrap()
                .validate()
        };
        assert!(hourly("3").unwrap_err().contains("at least 4 days"));
        assert_eq!(hourly("4"), Ok(()));
        let capped = Config::try_parse_from(["glimpse-server", "--retention-days", "10"]).unwrap();
        assert_eq!(capped.hourly_sketch_days(), 10);
    }
}
