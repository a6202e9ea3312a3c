//! `cargo xtask sdk`: builds the browser SDK into `sdk/pkg/`.
//!
//! 1. `rustup target add wasm32-unknown-unknown` when the target is missing;
//! 2. `cargo build -p glimpse-sdk --target wasm32-unknown-unknown --profile wasm`;
//! 3. `wasm-bindgen --target web` (the CLI is installed at the exact version of
//!    the `wasm-bindgen` crate in Cargo.lock when the one on PATH differs);
//! 4. `wasm-opt -Oz --converge` from the npm package `binaryen@132`,
//!    installed under `target/tools` (Debian's binaryen breaks current
//!    wasm-bindgen output, so it is never used); skipped with a warning when
//!    npm is unavailable;
//! 5. the JS wrapper (`index.js` module, `glimpse.js` tag), `index.d.ts` and
//!    `package.json` from `sdk/js/`;
//! 6. every JS file minified by `terser` from npm (installed under
//!    `target/tools` too; skipped with a warning when npm is unavailable):
//!    it takes a third off the JS, gzip -9, the wasm-bindgen glue included.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tools::{output, status, workspace_root};

const TARGET: &str = "wasm32-unknown-unknown";
const PROFILE: &str = "wasm";
const BINARYEN: &str = "binaryen@132";
const TERSER: &str = "terser@5.51.4";
/// The budget of wasm + JS, gzip -9, from the SDK issue.
pub const BUDGET_GZIP_BYTES: u64 = 40_960;

pub fn run() -> Result<()> {
    let root = workspace_root();
    let pkg = root.join("sdk/pkg");
    ensure_target()?;
    let cargo = crate::tools::cargo();
    let mut build = Command::new(&cargo);
    build.current_dir(&root).args([
        "build",
        "-p",
        "glimpse-sdk",
        "--target",
        TARGET,
        "--profile",
        PROFILE,
    ]);
    // The wasm must not inherit host-only flags of the caller.
    build.env_remove("RUSTFLAGS");
    status(&mut build)?;
    let wasm = crate::tools::target_dir()
        .join(TARGET)
        .join(PROFILE)
        .join("glimpse_sdk.wasm");

    let bindgen = ensure_wasm_bindgen(&root, &cargo)?;
    if pkg.exists() {
        fs::remove_dir_all(&pkg).with_context(|| format!("removing {}", pkg.display()))?;
    }
    fs::create_dir_all(&pkg)?;
    status(
        Command::new(&bindgen)
            .arg(&wasm)
            .args(["--target", "web", "--out-name", "glimpse_sdk", "--out-dir"])
            .arg(&pkg),
    )?;

    let out = pkg.join("glimpse_sdk_bg.wasm");
    match npm_tool(&root, BINARYEN, "binaryen/bin/wasm-opt") {
        Some(opt) => {
            let tmp = pkg.join("glimpse_sdk_bg.opt.wasm");
            // The producers and target-features sections only inform tools;
            // Rust puts its stack first, so no data lives below address 1024.
            status(
                Command::new(&opt)
                    .arg(&out)
                    .args(["-Oz", "--converge", "--low-memory-unused"])
                    .args(["--strip-producers", "--strip-target-features"])
                    .arg("-o")
                    .arg(&tmp),
            )?;
            fs::rename(&tmp, &out)?;
        }
        None => eprintln!(
            "xtask sdk: no usable wasm-opt (npm {BINARYEN}); the wasm is not optimised further"
        ),
    }

    let js = root.join("sdk/js");
    for name in ["index.js", "glimpse.js", "index.d.ts"] {
        fs::copy(js.join(name), pkg.join(name)).with_context(|| format!("copying {name}"))?;
    }
    let manifest = fs::read_to_string(js.join("package.json"))?
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    fs::write(pkg.join("package.json"), manifest)?;
    match npm_tool(&root, TERSER, "terser/bin/terser") {
        Some(terser) => {
            // The tag is a classic script; the others are ES modules.
            for (name, module) in [
                ("glimpse_sdk.js", true),
                ("index.js", true),
                ("glimpse.js", false),
            ] {
                let path = pkg.join(name);
                let mut minify = Command::new(&terser);
                minify
                    .arg(&path)
                    .args(["--compress", "--mangle", "-o"])
                    .arg(&path);
                if module {
                    minify.arg("--module");
                }
                status(&mut minify)?;
            }
        }
        None => eprintln!("xtask sdk: no usable terser (npm {TERSER}); the JS is not minified"),
    }

    let mut total = 0;
    for name in [
        "glimpse_sdk_bg.wasm",
        "glimpse_sdk.js",
        "index.js",
        "glimpse.js",
    ] {
        let path = pkg.join(name);
        let raw = fs::metadata(&path)?.len();
        let gz = gzip9_len(&path);
        total += gz.unwrap_or(raw);
        println!(
            "  {name:<22} {raw:>7} bytes, gzip -9 {}",
            gz.map_or("?".into(), |g| g.to_string())
        );
    }
    println!(
        "xtask sdk: built {} (wasm + JS, gzip -9: {total} bytes; budget {BUDGET_GZIP_BYTES})",
        pkg.display()
    );
    Ok(())
}

fn ensure_target() -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]));
    match installed {
        Some(list) if list.lines().any(|l| l.trim() == TARGET) => Ok(()),
        Some(_) => status(Command::new("rustup").args(["target", "add", TARGET])),
        // No rustup: let cargo report a missing target itself.
        None => Ok(()),
    }
}

/// The version of the `wasm-bindgen` crate in Cargo.lock.
fn locked_wasm_bindgen(root: &Path) -> Result<String> {
    let lock = fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
            {
                return Ok(v.trim_end_matches('"').to_string());
            }
        }
    }
    bail!("no wasm-bindgen in Cargo.lock")
}

fn ensure_wasm_bindgen(root: &Path, cargo: &str) -> Result<PathBuf> {
    let want = locked_wasm_bindgen(root)?;
    let have = output(Command::new("wasm-bindgen").arg("--version"));
    if have.as_deref().and_then(|v| v.split_whitespace().nth(1)) == Some(want.as_str()) {
        return Ok(PathBuf::from("wasm-bindgen"));
    }
    eprintln!("xtask sdk: installing wasm-bindgen-cli {want} (found {have:?})");
    // Not --locked: the CLI's own lockfile pins crates the registry mirror may lack.
    status(Command::new(cargo).args(["install", "wasm-bindgen-cli", "--version", &want]))?;
    Ok(crate::tools::cargo_home()
        .map(|h| h.join("bin/wasm-bindgen"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("wasm-bindgen")))
}

/// The program `bin` (a path under `node_modules`) of the npm `package`,
/// installed under target/tools on first use.
fn npm_tool(root: &Path, package: &str, bin: &str) -> Option<PathBuf> {
    let prefix = root.join("target/tools");
    let bin = prefix.join("node_modules").join(bin);
    if !bin.exists() {
        eprintln!("xtask sdk: installing {package} under {}", prefix.display());
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(package)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
    }
    output(Command::new(&bin).arg("--version")).map(|_| bin)
}

fn gzip9_len(path: &Path) -> Option<u64> {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout.len() as u64)
}
