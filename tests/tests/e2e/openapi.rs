//! The OpenAPI document against a real edge (embedded store, loopback,
//! a throwaway data directory, an API key): `openapi-spec-validator`
//! validates it, then schemathesis exercises every documented operation,
//! with the key, and checks every answer against the document (no 5xx,
//! documented statuses, content types, headers and schemas, JSON error codes
//! each operation lists, 401 without the key, 405 for other methods).
//! Its settings are `tests/fixtures/schemathesis.toml`; the tools are the
//! pinned ones `cargo xtask test` installs into
//! `~/.cache/glimpse/openapi-venv`.

use std::path::PathBuf;
use std::process::Command;

use glimpse_tests::edge::{workspace_root, Edge};

const KEY: &str = "openapi-check-key-0123456789";

/// A program of the venv `cargo xtask test` makes.
fn venv_tool(name: &str) -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let path = PathBuf::from(home)
        .join(".cache/glimpse/openapi-venv/bin")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo xtask test` installs it (a venv with the pins in xtask/src/tools.rs)",
        path.display()
    );
    path
}

/// Runs `cmd`, failing the test with its output unless it succeeds.
fn succeeds(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
}

#[test]
fn schemathesis_finds_nothing_against_a_real_edge() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &["--api-keys", KEY]);
    let (status, document) = edge.get_raw("/v1/openapi.json").unwrap();
    assert_eq!(status, 200);
    let saved = dir.path().join("openapi.json");
    std::fs::write(&saved, &document).unwrap();
    succeeds(Command::new(venv_tool("openapi-spec-validator")).arg(&saved));

    let config = workspace_root().join("tests/fixtures/schemathesis.toml");
    succeeds(
        Command::new(venv_tool("schemathesis"))
            .current_dir(dir.path())
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(edge.url("/v1/openapi.json"))
            .args(["--url", &edge.base_url])
            .args(["--header", &format!("Authorization: Bearer {KEY}")])
            // Bounded: about half a minute on two cores, the same cases
            // every run.
            .args(["--max-examples", "25", "--seed", "1", "--workers", "2"])
            .args(["--generation-database", "none", "--no-color"]),
    );
    edge.terminate();
}
