//! The Redis figures a scenario is charged with, from `INFO`: commands by
//! name (commandstats, which also counts commands run inside scripts), CPU
//! seconds (used_cpu_user + used_cpu_sys of the server process) and bytes
//! received (total_net_input_bytes).

use std::collections::BTreeMap;

use glimpse_tests::redis::{Conn, Reply};

/// Commands the benchmark itself sends to take its measurements; they are
/// left out of a scenario's count.
const OWN_COMMANDS: &[&str] = &["info", "config|resetstat", "config", "flushall"];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Calls by command name.
    pub calls: BTreeMap<String, u64>,
    pub cpu_seconds: f64,
    pub net_input_bytes: u64,
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

impl Snapshot {
    pub fn take(conn: &mut Conn) -> Snapshot {
        let reply = conn.cmd(&[b"INFO".as_slice(), b"everything".as_slice()]);
        let info = match &reply {
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("INFO answered {other}"),
        };
        Snapshot::parse(&info)
    }

    pub fn parse(info: &str) -> Snapshot {
        let mut calls = BTreeMap::new();
        for line in info.lines() {
            let Some(rest) = line.strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, stats)) = rest.split_once(':') else {
                continue;
            };
            let n = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            calls.insert(name.to_owned(), n);
        }
        let num = |name| {
            field(info, name)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Snapshot {
            calls,
            cpu_seconds: num("used_cpu_user") + num("used_cpu_sys"),
            net_input_bytes: num("total_net_input_bytes") as u64,
        }
    }

    /// Both snapshots' figures added: a deployment of several servers as
    /// one (every command runs on exactly one of them, so nothing counts
    /// twice).
    pub fn plus(mut self, other: &Snapshot) -> Snapshot {
        for (name, n) in &other.calls {
            *self.calls.entry(name.clone()).or_default() += n;
        }
        self.cpu_seconds += other.cpu_seconds;
        self.net_input_bytes += other.net_input_bytes;
        self
    }

    /// What happened between `self` (earlier) and `later`, without the
    /// benchmark's own measuring commands.
    pub fn delta(&self, later: &Snapshot) -> Usage {
        let mut calls = BTreeMap::new();
        for (name, n) in &later.calls {
            if OWN_COMMANDS.contains(&name.as_str()) {
                continue;
            }
            let d = n.saturating_sub(self.calls.get(name).copied().unwrap_or(0));
            if d > 0 {
                calls.insert(name.clone(), d);
            }
        }
        Usage {
            calls,
            cpu_seconds: later.cpu_seconds - self.cpu_seconds,
            net_input_bytes: later.net_input_bytes.saturating_sub(self.net_input_bytes),
        }
    }
}

/// Redis usage over a scenario.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub calls: BTreeMap<String, u64>,
    pub cpu_seconds: f64,
    pub net_input_bytes: u64,
}

impl Usage {
    pub fn commands(&self) -> u64 {
        self.calls.values().sum()
    }

    /// `name=calls` by descending calls.
    pub fn breakdown(&self) -> String {
        let mut v: Vec<_> = self.calls.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.iter()
            .map(|(n, c)| format!("{n}={c}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_subtracts_info() {
        let before = Snapshot::parse(
            "# CPU\r\nused_cpu_sys:1.5\r\nused_cpu_user:2.0\r\n# Stats\r\ntotal_net_input_bytes:100\r\n# Commandstats\r\ncmdstat_info:calls=3,usec=1\r\ncmdstat_pfadd:calls=10,usec=5,usec_per_call=0.5\r\n",
        );
        let after = Snapshot::parse(
            "used_cpu_sys:2.5\r\nused_cpu_user:2.5\r\ntotal_net_input_bytes:400\r\ncmdstat_info:calls=9,usec=1\r\ncmdstat_pfadd:calls=25,usec=5\r\ncmdstat_incrby:calls=2,usec=1\r\n",
        );
        let usage = before.delta(&after);
        assert_eq!(usage.commands(), 17);
        assert_eq!(usage.net_input_bytes, 300);
        assert!((usage.cpu_seconds - 1.5).abs() < 1e-9);
        assert_eq!(usage.breakdown(), "pfadd=15 incrby=2");
    }

    #[test]
    fn adds_the_snapshots_of_several_servers() {
        let a = Snapshot::parse(
            "used_cpu_sys:1.0\r\nused_cpu_user:2.0\r\ntotal_net_input_bytes:100\r\ncmdstat_incr:calls=4,usec=1\r\n",
        );
        let b = Snapshot::parse(
            "used_cpu_sys:0.5\r\nused_cpu_user:0.25\r\ntotal_net_input_bytes:7\r\ncmdstat_incr:calls=1,usec=1\r\ncmdstat_pfadd:calls=3,usec=1\r\n",
        );
        let sum = Snapshot::default().plus(&a).plus(&b);
        assert_eq!(sum.calls.get("incr"), Some(&5));
        assert_eq!(sum.calls.get("pfadd"), Some(&3));
        assert_eq!(sum.net_input_bytes, 107);
        assert!((sum.cpu_seconds - 3.75).abs() < 1e-9);
    }
}
