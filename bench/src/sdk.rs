//! Compressed sizes of the built SDK: what a page downloads, wasm + JS.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use glimpse_tests::browser::gzip9;

/// The files a page loads: the wasm and every JS module of the package.
fn shipped(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| {
            format!(
                "reading {} (build it with `cargo xtask sdk`)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".wasm") || (name.ends_with(".js") && !name.ends_with(".d.js"))
        })
        .collect();
    files.sort();
    if !files
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "wasm"))
    {
        bail!(
            "no .wasm in {}: build it with `cargo xtask sdk`",
            dir.display()
        );
    }
    Ok(files)
}

pub fn brotli11(data: &[u8]) -> usize {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).expect("in-memory write");
    out.len()
}

/// A Markdown table of raw, gzip -9 and brotli -q 11 sizes, per file and in all.
pub fn sizes(dir: &Path) -> Result<String> {
    let mut out =
        String::from("| file | raw bytes | gzip -9 | brotli -q 11 |\n|---|---:|---:|---:|\n");
    let (mut raw, mut gz, mut br) = (0, 0, 0);
    for path in shipped(dir)? {
        let data = std::fs::read(&path)?;
        let (g, b) = (gzip9(&data), brotli11(&data));
        raw += data.len();
        gz += g;
        br += b;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let _ = writeln!(out, "| {name} | {} | {g} | {b} |", data.len());
    }
    let _ = writeln!(
        out,
        "| all (each file compressed alone, as served) | {raw} | {gz} ({:.1} KiB) | {br} ({:.1} KiB) |",
        gz as f64 / 1024.0,
        br as f64 / 1024.0
    );
    Ok(out)
}
