//! `cargo xtask test`: every check and test of the project, in one command
//! that a fresh machine can run.
//!
//! It installs what is missing (Debian's `redis-server`, `chromium`,
//! `chromium-driver`, `firefox-esr`, `webkit2gtk-driver`, `xvfb` and
//! `xauth`; `geckodriver` from crates.io into `~/.cache/glimpse/tools`;
//! schemathesis and openapi-spec-validator from PyPI into the venv
//! `~/.cache/glimpse/openapi-venv`, with `python3-venv` when Debian's
//! `python3` lacks it; Vite and TypeScript from npm under `target/tools`;
//! the wasm target and the wasm-bindgen CLI through [`crate::sdk`]), then
//! runs,
//! stopping at the first failure:
//! formatting, clippy, the SDK build, the demo site's unit tests, the deploy
//! manifest checks, and `cargo test --workspace` (unit, router and
//! end-to-end tests with real processes, the OpenAPI check against a real
//! edge among them) last.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

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
        // The browser tests' other two engines: Firefox and WebKit, whose
        // MiniBrowser needs an X server (xauth is for running it by hand
        // under xvfb-run).
        ("firefox-esr", "firefox-esr"),
        ("WebKitWebDriver", "webkit2gtk-driver"),
        ("Xvfb", "xvfb"),
        ("xauth", "xauth"),
        // glimpse-bench's second load generator (bench/tests/tiny.rs runs it).
        ("wrk", "wrk"),
    ])?;
    let cargo = tools::cargo();
    tools::ensure_geckodriver(&cargo)?;
    tools::ensure_openapi_tools()?;
    // The npm package's test (`tests/tests/e2e/npm_package.rs`) checks an
    // app's types with tsc and bundles it with Vite, as its users do.
    for (package, bin) in [
        ("vite@7.3.8", "vite/bin/vite.js"),
        ("typescript@6.0.3", "typescript/bin/tsc"),
    ] {
        tools::npm_tool(&root, package, bin)
            .with_context(|| format!("npm could not install {package}"))?;
    }
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

    step("fuzz targets, 30 s each (fuzz/run-brief.sh)");
    status(
        Command::new("bash")
            .current_dir(&root)
            .arg("fuzz/run-brief.sh"),
    )?;

    step("cargo test --workspace");
    let mut test = Command::new(&cargo);
    // The SDK was built above; the browser tests need not build it again.
    test.current_dir(&root)
        .args(["test", "--workspace"])
        .env("GLIMPSE_SDK_PREBUILT", "1");
    let totals = run_counting_tests(&mut test)?;
    // One closing line over all of cargo's per-binary summaries.
    println!(
        "\nglimpse: {} passed, {} failed",
        totals.passed, totals.failed
    );
    if !totals.succeeded {
        bail!("cargo test failed");
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    succeeded: bool,
}

/// Runs `cmd`, echoing its stdout, and adds up its `test result:` lines.
fn run_counting_tests(cmd: &mut Command) -> Result<TestTotals> {
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut totals = TestTotals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some((passed, failed)) = parse_test_result(&line) {
            totals.passed += passed;
            totals.failed += failed;
        }
    }
    totals.succeeded = child.wait()?.success() && totals.failed == 0;
    Ok(totals)
}

/// `(passed, failed)` of a libtest line such as
/// `test result: ok. 14 passed; 0 failed; 0 ignored; ...`.
fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';')
            .map(str::trim)
            .find_map(|part| part.rsplit_once(' ').filter(|(_, w)| *w == word))
            .and_then(|(n, _)| n.rsplit(' ').next()?.parse().ok())
    };
    Some((count("passed")?, count("failed")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_summaries() {
        assert_eq!(
            parse_test_result("test result: ok. 14 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.41s"),
            Some((14, 0))
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 3 passed; 2 failed; 0 ignored"),
            Some((3, 2))
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
    }
}
