//! `cargo xtask sdk`: builds the browser SDK into `sdk/pkg/`.
//!
//! 1. `rustup target add wasm32-unknown-unknown` when the target is missing;
//! 2. `cargo build -p glimpse-sdk --target wasm32-unknown-unknown --profile wasm`;
//! 3. `wasm-bindgen --target web` (the CLI is installed at the exact version of
//!    the `wasm-bindgen` crate in Cargo.lock when the one on PATH differs);
//! 4. the imports and exports renamed to one or two letters in the wasm and
//!    the glue, the exports the glue does not read dropped, and the
//!    functions no call reaches but the function table keeps (`core::fmt`'s,
//!    js-sys's JSPI tasks', the closures' `call_once` vtable entries) made
//!    one `unreachable`, and the text only a
//!    panic would read zeroed ([`crate::minify`]);
//! 5. `wasm-opt --flatten --rereloop -Oz --converge -ocimfs 25 -Oz` from the npm package `binaryen@132`,
//!    installed under `target/tools` (Debian's binaryen breaks current
//!    wasm-bindgen output, so it is never used); the build fails without it;
//! 6. `esbuild` from npm (under `target/tools` too; required): the wrapper
//!    (`sdk/js/index.js`) and the wasm-bindgen glue bundled and minified into
//!    one ES module, `index.js`; the tag (`sdk/js/glimpse.js`) minified;
//! 7. the content-hashed copies the tag loads, which the edge serves as
//!    immutable: `glimpse-<hash>.wasm`, and `glimpse-<hash>.js`, the module
//!    naming that wasm; `glimpse.js` names both (it preloads the wasm);
//! 8. a Brotli (`.br`, quality 11) and a gzip (`.gz`, level 9) file next to
//!    every served file, which the edge picks by `Accept-Encoding`;
//! 9. `index.d.ts`, `README.md` and `package.json` from `sdk/js/`, and the sizes.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::tools::{output, status, workspace_root};

const TARGET: &str = "wasm32-unknown-unknown";
const PROFILE: &str = "wasm";
const BINARYEN: &str = "binaryen@132";
const ESBUILD: &str = "esbuild@0.28.2";
/// The wasm as wasm-bindgen names it, which the glue and the tag refer to.
const WASM: &str = "glimpse_sdk_bg.wasm";
/// The module of the npm package, and the name the tag's source refers to.
const MODULE: &str = "index.js";
const TAG: &str = "glimpse.js";
/// The target for wasm + JS the tag loads, gzip -9 (issue 17; the budget
/// test holds the figure reached so far).
const TARGET_GZIP_BYTES: u64 = 15_360;

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
    // Both tools first: a build without either must fail before it
    // replaces a good package.
    let opt = crate::tools::npm_tool(&root, BINARYEN, "binaryen/bin/wasm-opt")
        .with_context(|| format!("wasm-opt is required: npm could not install {BINARYEN}"))?;
    let esbuild = crate::tools::npm_tool(&root, ESBUILD, "esbuild/bin/esbuild")
        .with_context(|| format!("esbuild is required: npm could not install {ESBUILD}"))?;
    let work = crate::tools::target_dir().join("sdk-build");
    for dir in [&pkg, &work] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir)?;
    }
    status(
        Command::new(&bindgen)
            .arg(&wasm)
            .args(["--target", "web", "--out-name", "glimpse_sdk", "--out-dir"])
            .arg(&work),
    )?;

    // Short import and export names in the wasm and the glue, before
    // wasm-opt removes what only the dropped exports kept.
    let glue = work.join("glimpse_sdk.js");
    // Panic locations name the standard library's sources under
    // `/rustc/<commit>/`, the registry's under cargo's home, and this
    // crate's relative to the workspace.
    let mut source_prefixes = vec!["/rustc/".to_string(), "sdk/src/".to_string()];
    if let Some(home) = crate::tools::cargo_home() {
        source_prefixes.push(format!("{}/registry/src/", home.display()));
    }
    let (short_wasm, short_glue) = crate::minify::run(
        &fs::read(work.join(WASM))?,
        &fs::read_to_string(&glue)?,
        &source_prefixes,
    )
    .context("shortening the wasm's import and export names")?;
    fs::write(work.join(WASM), short_wasm)?;
    fs::write(&glue, short_glue)?;

    // The producers and target-features sections only inform tools; Rust
    // puts its stack first, so no data lives below address 1024.
    status(
        Command::new(&opt)
            .arg(work.join(WASM))
            // Flattened and re-relooped first: about 200 bytes less gzip
            // than -Oz alone.
            .args(["--flatten", "--rereloop", "-Oz", "--converge"])
            // A function with one caller is inlined only when it is small
            // (binaryen's default: whatever its size): about 1 KB more raw
            // but 500 bytes less gzip, measured.
            .args(["--one-caller-inline-max-function-size", "25"])
            // Once more after the passes above: about 100 bytes less
            // gzip, measured (`--type-ssa`, `--gufa`, `--licm` or
            // `--monomorphize` before it add nothing).
            .arg("-Oz")
            .arg("--low-memory-unused")
            .args(["--strip-producers", "--strip-target-features"])
            .arg("-o")
            .arg(pkg.join(WASM)),
    )?;

    let js = root.join("sdk/js");
    // The wrapper imports `./glimpse_sdk.js`, the glue beside it.
    fs::copy(js.join(MODULE), work.join("wrapper.js"))?;
    status(
        Command::new(&esbuild)
            .arg(work.join("wrapper.js"))
            .args([
                "--bundle",
                "--format=esm",
                "--minify",
                "--log-level=warning",
            ])
            .arg(format!("--outfile={}", pkg.join(MODULE).display())),
    )?;
    // The tag is a classic script.
    status(
        Command::new(&esbuild)
            .arg(js.join(TAG))
            .args(["--minify", "--log-level=warning"])
            .arg(format!("--outfile={}", pkg.join(TAG).display())),
    )?;

    let wasm_bytes = fs::read(pkg.join(WASM))?;
    let hashed_wasm = hashed_name(&wasm_bytes, "wasm");
    fs::write(pkg.join(&hashed_wasm), &wasm_bytes)?;
    let module = replace_once(&fs::read_to_string(pkg.join(MODULE))?, WASM, &hashed_wasm)
        .context("the bundled module")?;
    let hashed_module = hashed_name(module.as_bytes(), "js");
    fs::write(pkg.join(&hashed_module), &module)?;
    let tag = fs::read_to_string(pkg.join(TAG))?;
    let tag = replace_once(&tag, WASM, &hashed_wasm).context("the tag")?;
    let tag = replace_once(&tag, MODULE, &hashed_module).context("the tag")?;
    fs::write(pkg.join(TAG), tag)?;

    for file in ["index.d.ts", "README.md"] {
        fs::copy(js.join(file), pkg.join(file))?;
    }
    let manifest = fs::read_to_string(js.join("package.json"))?
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    fs::write(pkg.join("package.json"), manifest)?;

    let served = [TAG, MODULE, WASM, &hashed_module, &hashed_wasm];
    for name in served {
        precompress(&pkg.join(name))?;
    }
    println!(
        "  {:<28} {:>7} {:>8} {:>8}",
        "file", "bytes", "gzip -9", "brotli"
    );
    let mut tag_loads = 0;
    for name in served {
        let raw = fs::metadata(pkg.join(name))?.len();
        let gz = fs::metadata(pkg.join(format!("{name}.gz")))?.len();
        let br = fs::metadata(pkg.join(format!("{name}.br")))?.len();
        println!("  {name:<28} {raw:>7} {gz:>8} {br:>8}");
        if [TAG, hashed_module.as_str(), hashed_wasm.as_str()].contains(&name) {
            tag_loads += gz;
        }
    }
    println!(
        "xtask sdk: built {} (what the tag loads, gzip -9: {tag_loads} bytes; target {TARGET_GZIP_BYTES})",
        pkg.display()
    );
    Ok(())
}

/// `glimpse-<16 hex digits of SHA-256>.<ext>`: the edge serves names of this
/// shape as immutable (`server/src/http/sdk.rs`).
fn hashed_name(bytes: &[u8], ext: &str) -> String {
    let digest = Sha256::digest(bytes);
    let mut name = String::from("glimpse-");
    for b in &digest[..8] {
        name.push_str(&format!("{b:02x}"));
    }
    name.push('.');
    name.push_str(ext);
    name
}

/// `text` with its one occurrence of `from` as `to`; an error when `from`
/// occurs other than once (the file no longer refers to it as expected).
fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    let n = text.matches(from).count();
    if n != 1 {
        bail!("expected `{from}` once, found it {n} times");
    }
    Ok(text.replacen(from, to, 1))
}

/// Writes `<file>.br` (Brotli, quality 11) and `<file>.gz` (gzip, level 9).
fn precompress(path: &Path) -> Result<()> {
    let data = fs::read(path)?;
    let mut br = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut br, &params)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&data)?;
    let gz = gz.finish()?;
    let with = |ext: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(ext);
        PathBuf::from(name)
    };
    fs::write(with(".br"), br)?;
    fs::write(with(".gz"), gz)?;
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
