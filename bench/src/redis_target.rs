//! The Redis a scenario runs on: one private `redis-server`, or a Redis
//! Cluster of private masters (the starters of `glimpse_tests::redis`). Both
//! are flushed and measured the same way (a cluster's figures are its
//! masters' `INFO` summed) and read key by key wherever each key's slot
//! lives, so a scenario does not care which one it has.

use glimpse_tests::redis::{RedisCluster, RedisServer, Reply};

use crate::redis_info::Snapshot;

/// The hash tag of the scratch keys [`RedisTarget::pfcount`] copies sketches
/// under on a cluster: one tag, so one slot, so one `PFCOUNT` sees them all.
/// Braces cannot occur in the baseline's or the edge's ids, so no key of a
/// scenario shares it.
const UNION_TAG: &str = "{glimpse-bench-union}";

/// The shards of the edge's batch claims (`server/src/store/redis/keys.rs`,
/// `claims`): a claim window is one hash per shard.
pub const CLAIM_SHARDS: u16 = 16;

/// The edge's claim hash of `shard` and `window` (days since 1970) under
/// its default `--redis-prefix`: the name `server/src/store/redis/keys.rs`
/// gives it. Written out here because the benchmark drives the edge as a
/// black box; [`RedisTarget::claims_held`] catches a name that drifted.
fn claims_key(shard: u16, window: i64) -> String {
    format!("glimpse:claims:{{c{shard}}}:{window}")
}

/// Plants claims of another edge in the hash `KEYS[1]` under the fields
/// `<ARGV[1]>-<n>` for `n` from `ARGV[2]` to `ARGV[3]`: ids no load
/// generator sends. One script call per chunk, so the fill costs no round
/// trip per claim.
const FILL_CLAIMS: &str = r"
for n = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  redis.call('HSET', KEYS[1], ARGV[1] .. '-' .. n, 'e-0000000000000000:1')
end
return 0
";

#[derive(Debug)]
pub enum RedisTarget {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl RedisTarget {
    /// One `redis-server` on a free loopback port.
    pub fn single() -> Self {
        RedisTarget::Single(RedisServer::start())
    }

    /// A cluster of `masters` masters (no replicas) on free loopback ports.
    pub fn cluster(masters: usize) -> Self {
        RedisTarget::Cluster(RedisCluster::start(masters))
    }

    /// The servers that hold data: the one, or every master.
    pub fn nodes(&self) -> &[RedisServer] {
        match self {
            RedisTarget::Single(server) => std::slice::from_ref(server),
            RedisTarget::Cluster(cluster) => &cluster.nodes,
        }
    }

    /// The flags that point `glimpse-server` and `glimpse-baseline` (which
    /// spell them alike) at this Redis.
    pub fn client_args(&self) -> [String; 2] {
        match self {
            RedisTarget::Single(server) => ["--redis-url".into(), server.url()],
            RedisTarget::Cluster(cluster) => ["--redis-cluster-nodes".into(), cluster.nodes_arg()],
        }
    }

    /// Empties every node, then takes the snapshot a scenario starts from.
    pub fn flush(&self) -> Snapshot {
        for node in self.nodes() {
            node.cmd(&[b"FLUSHALL"]).not_error();
        }
        self.snapshot()
    }

    /// `INFO` of every node, summed: what the deployment as a whole did.
    pub fn snapshot(&self) -> Snapshot {
        self.nodes()
            .iter()
            .map(|node| Snapshot::take(&mut node.connect()))
            .fold(Snapshot::default(), |sum, node| sum.plus(&node))
    }

    /// The command `args`, about `key`, on the node serving `key`.
    fn cmd_for(&self, key: &str, args: &[&[u8]]) -> Reply {
        match self {
            RedisTarget::Single(server) => server.cmd(args),
            RedisTarget::Cluster(cluster) => cluster.cmd(key.as_bytes(), args),
        }
    }

    /// Fills every claim hash of the windows `windows` (days since 1970)
    /// with `per_window` claims another edge made: the claims an edge finds
    /// in Redis after days of traffic, when each of its look-ups searches
    /// hashes far larger than the CPU's caches. A fresh Redis has none, so
    /// without this a claim costs what it costs in an empty hash.
    pub fn fill_claim_windows(&self, windows: std::ops::RangeInclusive<i64>, per_window: usize) {
        const CHUNK: usize = 10_000;
        for window in windows {
            for shard in 0..CLAIM_SHARDS {
                let key = claims_key(shard, window);
                for from in (0..per_window).step_by(CHUNK) {
                    let to = (from + CHUNK).min(per_window) - 1;
                    let (from, to) = (from.to_string(), to.to_string());
                    let args: [&[u8]; 7] = [
                        b"EVAL",
                        FILL_CLAIMS.as_bytes(),
                        b"1",
                        key.as_bytes(),
                        b"planted",
                        from.as_bytes(),
                        to.as_bytes(),
                    ];
                    self.cmd_for(&key, &args).not_error();
                }
            }
        }
    }

    /// How many claims the claim hashes of `window` hold, over every shard.
    pub fn claims_held(&self, window: i64) -> i64 {
        (0..CLAIM_SHARDS)
            .map(|shard| {
                let key = claims_key(shard, window);
                self.cmd_for(&key, &[b"HLEN", key.as_bytes()]).int()
            })
            .sum()
    }

    /// `GET key` on the node serving it.
    pub fn get(&self, key: &str) -> Reply {
        self.cmd_for(key, &[b"GET", key.as_bytes()])
    }

    /// `PFCOUNT` of the union of `keys`, by Redis's own estimator. On a
    /// cluster the keys lie in different slots (an ad's days have tags of
    /// their own), which one `PFCOUNT` refuses; so the sketches that exist
    /// are copied under one scratch tag, counted together on its node, and
    /// deleted again.
    pub fn pfcount(&self, keys: &[String]) -> Reply {
        let cluster = match self {
            RedisTarget::Single(server) => {
                let mut args: Vec<&[u8]> = vec![b"PFCOUNT"];
                args.extend(keys.iter().map(|k| k.as_bytes()));
                return server.cmd(&args);
            }
            RedisTarget::Cluster(cluster) => cluster,
        };
        let scratch = cluster.node_for(UNION_TAG.as_bytes());
        let mut copies = Vec::new();
        for key in keys {
            match self.get(key) {
                Reply::Bulk(Some(sketch)) => {
                    let copy = format!("{UNION_TAG}:{}", copies.len());
                    scratch.cmd(&[b"SET", copy.as_bytes(), &sketch]).not_error();
                    copies.push(copy);
                }
                Reply::Bulk(None) => {}
                other => return other,
            }
        }
        if copies.is_empty() {
            // What PFCOUNT answers for keys that do not exist.
            return Reply::Int(0);
        }
        let mut args: Vec<&[u8]> = vec![b"PFCOUNT"];
        args.extend(copies.iter().map(|k| k.as_bytes()));
        let count = scratch.cmd(&args);
        args[0] = b"DEL";
        scratch.cmd(&args).not_error();
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adds `visitors` to the sketch at `key` through `target`'s node for it.
    fn pfadd(target: &RedisTarget, key: &str, visitors: std::ops::Range<u32>) {
        let mut args: Vec<Vec<u8>> = vec![b"PFADD".to_vec(), key.as_bytes().to_vec()];
        args.extend(visitors.map(|v| format!("visitor-{v}").into_bytes()));
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        target.cmd_for(key, &args).not_error();
    }

    #[test]
    fn a_cluster_counts_a_union_across_slots_as_one_server_does() {
        let single = RedisTarget::single();
        let cluster = RedisTarget::cluster(3);
        let RedisTarget::Cluster(nodes) = &cluster else {
            unreachable!("started as a cluster")
        };
        // Keys of three tags that live on three different masters, so the
        // union really crosses nodes.
        let mut keys: Vec<String> = Vec::new();
        let mut ports = Vec::new();
        for i in 0.. {
            let key = format!("uv:{{ad-{i}}}");
            let port = nodes.node_for(key.as_bytes()).port();
            if !ports.contains(&port) {
                ports.push(port);
                keys.push(key);
            }
            if keys.len() == 3 {
                break;
            }
        }
        for target in [&single, &cluster] {
            // Overlapping visitors, and one sparse, one dense sketch.
            pfadd(target, &keys[0], 0..300);
            pfadd(target, &keys[1], 200..20_000);
            pfadd(target, &keys[2], 19_000..19_500);
        }
        let mut asked = keys.clone();
        asked.push("uv:{nobody}".into());
        let expected = single.pfcount(&asked).int();
        assert!((19_000..21_000).contains(&expected), "{expected}");
        assert_eq!(cluster.pfcount(&asked).int(), expected);
        assert_eq!(cluster.pfcount(&asked[3..]).int(), 0);
        // The scratch copies are gone: the three sketches are all there is.
        let keys_held: i64 = cluster
            .nodes()
            .iter()
            .map(|n| n.cmd(&[b"DBSIZE"]).int())
            .sum();
        assert_eq!(keys_held, 3);
    }

    #[test]
    fn a_cluster_snapshot_sums_its_masters() {
        let cluster = RedisTarget::cluster(3);
        let before = cluster.flush();
        let RedisTarget::Cluster(nodes) = &cluster else {
            unreachable!("started as a cluster")
        };
        for i in 0..30 {
            let key = format!("n:{{ad-{i}}}");
            nodes.cmd(key.as_bytes(), &[b"INCR", key.as_bytes()]).int();
        }
        let usage = before.delta(&cluster.snapshot());
        // Every INCR ran on the node of its key, and each is counted once.
        assert_eq!(usage.calls.get("incr"), Some(&30));
        let per_node: Vec<i64> = cluster
            .nodes()
            .iter()
            .map(|n| n.cmd(&[b"DBSIZE"]).int())
            .collect();
        assert!(per_node.iter().all(|&n| n > 0), "{per_node:?}");
        assert_eq!(per_node.iter().sum::<i64>(), 30);
    }
}
