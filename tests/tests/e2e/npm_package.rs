//! The npm package as a front-end developer consumes it: `npm pack` of the
//! built SDK, installed into an app from the tarball, its types checked by
//! `tsc`, the app bundled by Vite, and the bundle counting an ad in real
//! browsers of three engines against a real edge serving it.
//!
//! Vite and TypeScript are the npm packages `cargo xtask test` installs
//! under `target/tools` (pinned there).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use glimpse_tests::browser::{self, Browser};
use glimpse_tests::edge::{wait_until, workspace_root, Edge, COUNT_AUTOMATION};
use glimpse_tests::sdk_page::{expect_counts, pause, DELIVERY_DEADLINE};
use serde_json::{json, Value};

/// A program of an npm package `cargo xtask test` installed.
fn npm_tool(bin: &str) -> PathBuf {
    let path = workspace_root().join("target/tools/node_modules").join(bin);
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask test` installs it",
        path.display()
    );
    path
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `tsc` in strict mode on `file` of the app, for a bundler's module
/// resolution (what Vite does).
fn type_check(app: &Path, file: &str) -> Command {
    let mut tsc = Command::new("node");
    tsc.current_dir(app)
        .arg(npm_tool("typescript/bin/tsc"))
        .args(["--strict", "--noEmit", "--pretty", "false"])
        .args(["--target", "es2022", "--module", "esnext"])
        .args(["--moduleResolution", "bundler", "--lib", "es2022,dom"])
        .arg(file);
    tsc
}

/// The tarball's file name and the files it holds (sorted), by `npm pack
/// --json`'s own report.
fn pack_report(report: &[u8]) -> (String, Vec<String>) {
    let report: Value = serde_json::from_slice(report).expect("npm pack --json");
    let tarball = report[0]["filename"]
        .as_str()
        .expect("npm pack names the tarball");
    let mut files: Vec<String> = report[0]["files"]
        .as_array()
        .expect("npm pack lists the files")
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    files.sort();
    (tarball.to_owned(), files)
}

/// The app of `tests/fixtures/npm-app`, with the package installed from its
/// tarball, type-checked and built once per test run: its `dist/`.
fn bundled_app() -> &'static Path {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| {
        let pkg = browser::sdk_pkg();
        let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("npm-app");
        let _ = std::fs::remove_dir_all(&work);
        let app = work.join("app");
        std::fs::create_dir_all(&app).unwrap();

        let packed = run(Command::new("npm")
            .current_dir(&pkg)
            .args(["pack", "--json", "--pack-destination"])
            .arg(&work));
        let (tarball, files) = pack_report(&packed.stdout);
        let hashed = |ext: &str| {
            files
                .iter()
                .filter(|f| f.starts_with("glimpse-") && f.ends_with(ext))
                .count()
        };
        assert_eq!((hashed(".js"), hashed(".wasm")), (1, 1), "{files:?}");
        let named: Vec<&str> = files
            .iter()
            .map(String::as_str)
            .filter(|f| !f.starts_with("glimpse-"))
            .collect();
        assert_eq!(
            named,
            [
                "README.md",
                "glimpse.js",
                "glimpse_sdk_bg.wasm",
                "index.d.ts",
                "index.js",
                "package.json"
            ],
            "what the package ships (no precompressed copies)"
        );
        let tarball = work.join(tarball);

        let fixture = workspace_root().join("tests/fixtures/npm-app");
        for file in ["index.html", "main.ts", "misuse.ts"] {
            std::fs::copy(fixture.join(file), app.join(file)).unwrap();
        }
        std::fs::write(
            app.join("package.json"),
            r#"{"name": "npm-app", "private": true, "type": "module"}"#,
        )
        .unwrap();
        run(Command::new("npm")
            .current_dir(&app)
            .args(["install", "--offline", "--no-audit", "--no-fund"])
            .arg(&tarball));

        run(&mut type_check(&app, "main.ts"));
        let refused = type_check(&app, "misuse.ts").output().unwrap();
        let said = String::from_utf8_lossy(&refused.stdout);
        let errors: Vec<&str> = said.lines().filter(|l| l.contains("error TS")).collect();
        assert!(
            !refused.status.success()
                && errors.len() == 2
                && errors[0].starts_with("misuse.ts(5,")
                && said.contains("Property 'endpoint' is missing")
                && errors[1].starts_with("misuse.ts(6,"),
            "tsc refuses a start without endpoint and a maxBatch that is text: {said}"
        );

        let dist = work.join("dist");
        run(Command::new("node")
            .current_dir(&app)
            .arg(npm_tool("vite/bin/vite.js"))
            .args(["build", ".", "--emptyOutDir", "--outDir"])
            .arg(&dist));
        let assets: Vec<String> = std::fs::read_dir(dist.join("assets"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            assets.iter().any(|a| a.ends_with(".wasm")),
            "Vite emitted the wasm the module names: {assets:?}"
        );
        dist
    })
}

glimpse_tests::in_every_engine! {
    fn an_app_bundled_from_the_npm_package_counts(engine) {
        let dist = bundled_app();
        let _one_at_a_time = browser::exclusive();
        let dir = tempfile::tempdir().unwrap();
        let edge = Edge::start(
            dir.path(),
            &[
                "--www-dir",
                dist.to_str().unwrap(),
                "--sync-interval",
                "100ms",
                COUNT_AUTOMATION,
            ],
        );
        let b = Browser::start_in(engine);
        b.goto(&edge.url("/"));
        wait_until(DELIVERY_DEADLINE, "the app's tracker started", &mut || {
            b.execute("return window.glimpse !== undefined;", vec![]) == json!(true)
        });
        // Both slots are in view: the dwell of the 1 s rule.
        pause(1400);
        let flushed = b.execute_async(
            "const done = arguments[0]; window.glimpse.flush().then(() => done('ok'));",
            vec![],
        );
        assert_eq!(flushed, json!("ok"));
        let what = format!("{}: the bundled app", engine.name());
        expect_counts(&edge, "npm-tag-ad", (1, 1), &what);
        expect_counts(&edge, "npm-observed-ad", (1, 1), &what);
        let campaign: Value = edge.get_json("/v1/campaigns/npm-run/stats");
        assert_eq!(campaign["impressions"], json!(1), "{what}: the campaign of observe's options");
    }
}
