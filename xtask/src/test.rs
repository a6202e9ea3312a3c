//! `cargo xtask test`: every check and test of the project, in one command
//! that a fresh machine can run.
//!
//! It installs what is missing (Debian's `redis-server`, `chromium` and
//! `chromium-driver`; the wasm target and the wasm-bindgen CLI through
//! [`crate::sdk`]), then runs, stopping at the first failure:
//! formatting, clippy, the SDK build, the demo site's unit tests, the deploy
//! manifest checks, and `cargo test --workspace` (unit, router and
//! end-to-end tests with real processes) last.

use std::process::Command;

use anyhow::Result;

use crate::tools::{self, status};

pub fn run() -> Result<()> {
    let root = tools::workspace_root();
    tools::ensure_debian_packages(&[
        ("redis-server", "redis-server"),
        ("redis-cli", "redis-tools"),
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
        ("node", "nodejs"),
        ("python3", "python3"),
    ])?;
    let cargo = tools::cargo();
    let step = |name: &str| eprintln!("\n==> xtask test: {name}");

    step("cargo fmt --check");
    status(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["fmt", "--all", "--check"]),
    )?;

    step("cargo clippy");
    status(Command::new(&cargo).current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;

    step("build the SDK");
    crate::sdk::run()?;

    step("demo site unit tests (node --test)");
    status(
        Command::new("node")
            .current_dir(&root)
            .args(["--test", "www/tests/"]),
    )?;

    step("deploy manifests (deploy/check.sh)");
    status(
        Command::new("bash")
            .current_dir(&root)
            .arg("deploy/check.sh"),
    )?;

    step("cargo test --workspace");
    status(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["test", "--workspace"]),
    )?;

    step("fuzz targets, 30 s each (fuzz/run-brief.sh)");
    status(
        Command::new("bash")
            .current_dir(&root)
            .arg("fuzz/run-brief.sh"),
    )
}
