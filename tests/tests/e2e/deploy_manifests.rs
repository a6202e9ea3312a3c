//! The deployment files (`Dockerfile`, `compose.yaml`, everything under
//! `deploy/`) may only name what the real `glimpse-server` reads, so they
//! cannot drift from the binary:
//!
//! - every `GLIMPSE_*` name in them is an env fallback that `--help` lists
//!   (clap prints each as `[env: NAME=…]`);
//! - every `GLIMPSE_LISTEN` they set parses as the server's `SocketAddr`, binds
//!   all interfaces, and has one port; `EXPOSE`, the image `HEALTHCHECK`, the
//!   compose edges and load balancer, the Kubernetes container port, probes
//!   and Service `targetPort` all use that same port;
//! - the HTTP paths that the probes and the health check call answer 200 on a
//!   real edge.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use glimpse_tests::edge::{workspace_binary, workspace_root, Edge};
use yaml_rust2::{Yaml, YamlLoader};

/// The env names that `glimpse-server --help` lists.
fn help_env_names() -> BTreeSet<String> {
    let mut command = Command::new(workspace_binary("glimpse-server"));
    command.arg("--help");
    // Values set in the caller's environment would be printed; keep them out.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GLIMPSE_") {
            command.env_remove(key);
        }
    }
    let out = command.output().expect("run glimpse-server --help");
    assert!(
        out.status.success(),
        "glimpse-server --help failed: {out:?}"
    );
    let help = String::from_utf8(out.stdout).expect("--help prints UTF-8");
    // Help text may be wrapped; `[env:` and the name can land on two lines.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let names: BTreeSet<String> = help
        .match_indices("[env: ")
        .map(|(at, marker)| env_name_at(&help[at + marker.len()..]))
        .filter(|name| !name.is_empty())
        .collect();
    assert!(
        names.contains("GLIMPSE_LISTEN") && names.contains("GLIMPSE_DATA_DIR"),
        "could not read the env names from --help:\n{help}"
    );
    names
}

/// The `[A-Z0-9_]+` name at the start of `text`.
fn env_name_at(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
        .collect()
}

/// Every deployment file, relative to the workspace root.
fn deploy_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = vec![root.join("Dockerfile"), root.join("compose.yaml")];
    walk(&root.join("deploy"), &mut files);
    for file in &files {
        assert!(file.is_file(), "{} is missing", file.display());
    }
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_glimpse_env_name_in_the_deploy_files_is_read_by_the_server() {
    let known = help_env_names();
    let root = workspace_root();
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for file in deploy_files(&root) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not text: cannot name a variable
        };
        for (line_no, line) in text.lines().enumerate() {
            for (at, _) in line.match_indices("GLIMPSE_") {
                let starts_word = line[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
                let name = env_name_at(&line[at..]);
                if !starts_word || name.len() == "GLIMPSE_".len() {
                    continue;
                }
                if !known.contains(&name) {
                    unknown.push(format!("{}:{}: {name}", rel(&root, &file), line_no + 1));
                }
                used.insert(name);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the deploy files name env vars that glimpse-server --help does not list \
         (it lists {known:?}):\n  {}",
        unknown.join("\n  ")
    );
    // Guard against a scan that silently finds nothing.
    for name in ["GLIMPSE_LISTEN", "GLIMPSE_DATA_DIR", "GLIMPSE_API_KEYS"] {
        assert!(used.contains(name), "no deploy file sets {name}");
    }
}

/// Ports and paths found in the deploy files, each with where it came from.
#[derive(Debug, Default)]
struct Found {
    listen: Vec<(String, String)>,
    ports: BTreeMap<&'static str, Vec<(String, u16)>>,
    http_paths: BTreeSet<String>,
}

impl Found {
    fn port(&mut self, kind: &'static str, at: String, port: u16) {
        self.ports.entry(kind).or_default().push((at, port));
    }
}

/// `http://host:port/path` -> (port, path).
fn url_port_path(url: &str) -> Option<(u16, String)> {
    let rest = url.split_once("://")?.1;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let port = authority.rsplit_once(':')?.1.parse().ok()?;
    Some((port, path))
}

fn scan_dockerfile(root: &Path, found: &mut Found) {
    let text = read(&root.join("Dockerfile")).replace("\\\n", " ");
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("EXPOSE") => {
                for port in words {
                    let port = port.trim_end_matches("/tcp").parse().expect("EXPOSE port");
                    found.port("Dockerfile EXPOSE", "Dockerfile".into(), port);
                }
            }
            Some("ENV") => {
                for word in words {
                    if let Some(value) = word.strip_prefix("GLIMPSE_LISTEN=") {
                        let value = value.trim_matches('"').to_owned();
                        found.listen.push(("Dockerfile ENV".into(), value));
                    }
                }
            }
            Some("HEALTHCHECK") => {
                let url = line
                    .split(['"', ' '])
                    .find(|w| w.starts_with("http://"))
                    .expect("HEALTHCHECK calls an http:// URL");
                let (port, path) = url_port_path(url).expect("HEALTHCHECK URL has a port");
                found.port("Dockerfile HEALTHCHECK", url.into(), port);
                found.http_paths.insert(path);
            }
            _ => {}
        }
    }
}

fn load_yaml(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn as_str(yaml: &Yaml) -> Option<String> {
    match yaml {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Every `GLIMPSE_LISTEN` value in a YAML tree, in any of the shapes env vars
/// take: a map key (ConfigMap data, compose `environment:` map), a
/// `{name, value}` entry (Kubernetes `env:`), or a `NAME=value` string
/// (compose `environment:` list).
fn collect_listen(yaml: &Yaml, at: &str, out: &mut Vec<(String, String)>) {
    match yaml {
        Yaml::Hash(map) => {
            for (key, value) in map {
                if key.as_str() == Some("GLIMPSE_LISTEN") {
                    out.push((
                        at.to_owned(),
                        as_str(value).expect("GLIMPSE_LISTEN is a string"),
                    ));
                }
                collect_listen(value, at, out);
            }
            if yaml["name"].as_str() == Some("GLIMPSE_LISTEN") {
                if let Some(value) = as_str(&yaml["value"]) {
                    out.push((at.to_owned(), value));
                }
            }
        }
        Yaml::Array(items) => items.iter().for_each(|item| collect_listen(item, at, out)),
        Yaml::String(s) => {
            if let Some(value) = s.strip_prefix("GLIMPSE_LISTEN=") {
                out.push((at.to_owned(), value.to_owned()));
            }
        }
        _ => {}
    }
}

fn is_edge_image(image: &Yaml) -> bool {
    image.as_str().is_some_and(|i| i.contains("glimpse-server"))
}

/// A probe's or Service's port: a number, or a name from the container's ports.
fn resolve_port(port: &Yaml, named: &BTreeMap<String, u16>, at: &str) -> u16 {
    match port {
        Yaml::Integer(n) => u16::try_from(*n).expect("port in range"),
        Yaml::String(name) => *named
            .get(name)
            .unwrap_or_else(|| panic!("{at}: port name {name:?} is not a container port name")),
        other => panic!("{at}: unexpected port {other:?}"),
    }
}

fn scan_kubernetes(root: &Path, found: &mut Found) {
    let dir = root.join("deploy/kubernetes");
    let mut docs = Vec::new();
    for file in deploy_files(root) {
        if file.starts_with(&dir) && file.extension().is_some_and(|e| e == "yaml") {
            let at = rel(root, &file);
            for doc in load_yaml(&file) {
                collect_listen(&doc, &at, &mut found.listen);
                docs.push((at.clone(), doc));
            }
        }
    }
    // Edge pods: their labels and named ports, for the Services below.
    let mut edge_pods: Vec<(BTreeMap<String, String>, BTreeMap<String, u16>)> = Vec::new();
    for (at, doc) in &docs {
        let Some(kind) = doc["kind"].as_str() else {
            continue;
        };
        if !matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet") {
            continue;
        }
        let pod = &doc["spec"]["template"];
        let Some(containers) = pod["spec"]["containers"].as_vec() else {
            continue;
        };
        for container in containers.iter().filter(|c| is_edge_image(&c["image"])) {
            let at = format!("{at} {kind} container {:?}", container["name"].as_str());
            let mut named = BTreeMap::new();
            for port in container["ports"].as_vec().into_iter().flatten() {
                let number = resolve_port(&port["containerPort"], &named, &at);
                if let Some(name) = port["name"].as_str() {
                    named.insert(name.to_owned(), number);
                }
                found.port("k8s containerPort", at.clone(), number);
            }
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                let get = &container[probe]["httpGet"];
                if get.is_badvalue() {
                    continue;
                }
                let port = resolve_port(&get["port"], &named, &at);
                found.port("k8s probe port", format!("{at} {probe}"), port);
                if let Some(path) = get["path"].as_str() {
                    found.http_paths.insert(path.to_owned());
                }
            }
            let labels = pod["metadata"]["labels"]
                .as_hash()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect();
            edge_pods.push((labels, named));
        }
    }
    for (at, doc) in &docs {
        if doc["kind"].as_str() != Some("Service") {
            continue;
        }
        let selector: BTreeMap<String, String> = doc["spec"]["selector"]
            .as_hash()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
            .collect();
        let Some((_, named)) = edge_pods.iter().find(|(labels, _)| {
            !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        }) else {
            continue; // not a Service of the edges
        };
        for port in doc["spec"]["ports"].as_vec().into_iter().flatten() {
            let target = if port["targetPort"].is_badvalue() {
                &port["port"]
            } else {
                &port["targetPort"]
            };
            let number = resolve_port(target, named, at);
            found.port("k8s Service targetPort", at.clone(), number);
        }
    }
}

fn scan_compose(root: &Path, found: &mut Found) {
    let docs = load_yaml(&root.join("compose.yaml"));
    let compose = &docs[0];
    collect_listen(compose, "compose.yaml", &mut found.listen);
    let services = compose["services"].as_hash().expect("compose services");
    let mut edges = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().expect("service name");
        if !is_edge_image(&service["image"]) {
            continue;
        }
        edges.insert(name.to_owned());
        let at = format!("compose.yaml service {name}");
        for port in service["expose"].as_vec().into_iter().flatten() {
            let port = as_str(port).expect("expose entry");
            found.port(
                "compose expose",
                at.clone(),
                port.parse().expect("expose port"),
            );
        }
        for port in service["ports"].as_vec().into_iter().flatten() {
            // [HOST:]HOST_PORT:CONTAINER_PORT[/proto]: the container side counts.
            let port = as_str(port).expect("ports entry");
            let container = port.rsplit(':').next().expect("container port");
            let container = container.split('/').next().expect("port number");
            found.port(
                "compose ports",
                at.clone(),
                container.parse().expect("port"),
            );
        }
        if let Some(test) = service["healthcheck"]["test"].as_vec() {
            for word in test.iter().filter_map(Yaml::as_str) {
                if let Some((port, path)) =
                    word.find("http://").and_then(|i| url_port_path(&word[i..]))
                {
                    found.port("compose healthcheck", at.clone(), port);
                    found.http_paths.insert(path);
                }
            }
        }
    }
    assert!(
        edges.len() >= 2,
        "compose.yaml runs two edges (image glimpse-server)"
    );
    // The load balancer's upstreams: `server EDGE:PORT ...;` lines.
    for file in deploy_files(root) {
        if !file.starts_with(root.join("deploy/compose")) {
            continue;
        }
        let at = rel(root, &file);
        for line in read(&file).lines().map(str::trim) {
            let mut words = line.split_whitespace();
            if words.next() != Some("server") {
                continue;
            }
            let Some((host, port)) = words
                .next()
                .and_then(|w| w.trim_end_matches(';').split_once(':'))
            else {
                continue;
            };
            if edges.contains(host) {
                found.port(
                    "compose load balancer upstream",
                    format!("{at}: {line}"),
                    port.parse().expect("port"),
                );
            }
        }
    }
}

#[test]
fn deploy_files_agree_on_one_port_and_call_real_routes() {
    let root = workspace_root();
    let mut found = Found::default();
    scan_dockerfile(&root, &mut found);
    scan_kubernetes(&root, &mut found);
    scan_compose(&root, &mut found);

    // GLIMPSE_LISTEN: parsed as the server parses it.
    assert!(
        ["Dockerfile", "compose.yaml", "deploy/kubernetes/"]
            .iter()
            .all(|source| found.listen.iter().any(|(at, _)| at.starts_with(source))),
        "GLIMPSE_LISTEN must be set in the Dockerfile, compose.yaml and the Kubernetes manifests: {:?}",
        found.listen
    );
    let mut listen_ports = BTreeSet::new();
    for (at, value) in &found.listen {
        let addr: SocketAddr = value.parse().unwrap_or_else(|e| {
            panic!("{at}: GLIMPSE_LISTEN={value:?} is not an address the server accepts: {e}")
        });
        assert!(
            addr.ip().is_unspecified(),
            "{at}: GLIMPSE_LISTEN={value} binds one interface; a container must listen on all"
        );
        listen_ports.insert(addr.port());
    }
    assert_eq!(
        listen_ports.len(),
        1,
        "GLIMPSE_LISTEN values disagree: {:?}",
        found.listen
    );
    let port = listen_ports.into_iter().next().unwrap();

    // Every kind of port reference is present, and each is that port.
    for kind in [
        "Dockerfile EXPOSE",
        "Dockerfile HEALTHCHECK",
        "k8s containerPort",
        "k8s probe port",
        "k8s Service targetPort",
        "compose expose",
        "compose load balancer upstream",
    ] {
        assert!(
            found.ports.contains_key(kind),
            "found no {kind}: {:?}",
            found.ports
        );
    }
    let wrong: Vec<_> = found
        .ports
        .iter()
        .flat_map(|(kind, list)| list.iter().map(move |(at, p)| (kind, at, p)))
        .filter(|(_, _, p)| **p != port)
        .collect();
    assert!(
        wrong.is_empty(),
        "ports other than GLIMPSE_LISTEN's {port}: {wrong:#?}"
    );

    // The probed paths are routes of the real server.
    assert!(
        found.http_paths.contains("/healthz") && found.http_paths.contains("/readyz"),
        "probes should call /healthz and /readyz: {:?}",
        found.http_paths
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let edge = Edge::start(dir.path(), &[] as &[&str]);
    for path in &found.http_paths {
        let (status, body) = edge.get_raw(path).expect("edge answers");
        assert_eq!(status, 200, "GET {path} on a fresh edge: {status} {body}");
    }
    let status = edge.terminate();
    assert!(
        status.success(),
        "the edge should exit cleanly on SIGTERM: {status}"
    );
}

/// `--maxmemory` and `--maxmemory-policy` of a Redis command line.
fn redis_memory_args(args: &[Yaml], at: &str) -> (u64, String) {
    let words: Vec<String> = args.iter().filter_map(as_str).collect();
    let value = |flag: &str| {
        let at_flag = words
            .iter()
            .position(|w| w == flag)
            .unwrap_or_else(|| panic!("{at}: Redis runs without {flag}"));
        words.get(at_flag + 1).cloned().expect("a value")
    };
    let max = value("--maxmemory");
    let bytes = max
        .strip_suffix("mb")
        .map(|n| n.parse::<u64>().expect("a number of mb") << 20)
        .or_else(|| {
            max.strip_suffix("gb")
                .map(|n| n.parse::<u64>().expect("gb") << 30)
        })
        .unwrap_or_else(|| panic!("{at}: --maxmemory {max} is not in mb or gb"));
    (bytes, value("--maxmemory-policy"))
}

#[test]
fn redis_refuses_writes_at_a_memory_bound_below_its_limit() {
    let root = workspace_root();
    let at = "deploy/kubernetes/redis-statefulset.yaml";
    let docs = load_yaml(&root.join(at));
    let container = &docs[0]["spec"]["template"]["spec"]["containers"][0];
    let (max, policy) = redis_memory_args(container["args"].as_vec().expect("args"), at);
    assert_eq!(policy, "noeviction", "{at}: an evicted key is a lost count");
    let limit = container["resources"]["limits"]["memory"]
        .as_str()
        .expect("a memory limit");
    let limit: u64 = limit
        .strip_suffix("Gi")
        .map(|n| n.parse::<u64>().unwrap() << 30)
        .or_else(|| {
            limit
                .strip_suffix("Mi")
                .map(|n| n.parse::<u64>().unwrap() << 20)
        })
        .expect("limit in Gi or Mi");
    // Room above maxmemory for the AOF rewrite's fork and client buffers.
    assert!(
        max * 5 <= limit * 4,
        "{at}: maxmemory {max} leaves under a fifth of the {limit} limit"
    );
    let compose = &load_yaml(&root.join("compose.yaml"))[0];
    let command = compose["services"]["redis"]["command"]
        .as_vec()
        .expect("the compose Redis has a command list");
    let (_, policy) = redis_memory_args(command, "compose.yaml");
    assert_eq!(policy, "noeviction");
}

#[test]
fn the_alert_rules_watch_metrics_the_edge_exposes() {
    let root = workspace_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let edge = Edge::start(dir.path(), &[] as &[&str]);
    let (status, metrics) = edge.get_raw("/metrics").expect("edge answers");
    assert_eq!(status, 200, "{metrics}");
    let exposed: BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut watched = BTreeSet::new();
    for file in deploy_files(&root) {
        if !file.starts_with(root.join("deploy/prometheus")) {
            continue;
        }
        for doc in load_yaml(&file) {
            for group in doc["groups"].as_vec().expect("rule groups") {
                for rule in group["rules"].as_vec().expect("rules") {
                    let expr = rule["expr"].as_str().expect("an expr");
                    for (at, _) in expr.match_indices("glimpse_") {
                        let name: String = expr[at..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        assert!(
                            exposed.contains(name.as_str()),
                            "{}: {name} is not on /metrics: {exposed:?}",
                            rel(&root, &file)
                        );
                        watched.insert(name);
                    }
                }
            }
        }
    }
    assert!(
        watched.contains("glimpse_store_up"),
        "an alert watches the store's health: {watched:?}"
    );
}
