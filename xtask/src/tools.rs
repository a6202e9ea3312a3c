//! Running commands and installing what the project needs when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    // `cargo xtask` (cargo run) sets the variable for the checkout it runs
    // in; the path compiled in is only a fallback, since cargo does not
    // rebuild xtask when the same sources sit at another path.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("xtask/ sits in the workspace root")
        .to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The cargo that runs this xtask.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cmd`, failing with its command line when it does not succeed.
pub fn status(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(())
}

/// Stdout of `cmd` when it runs and succeeds.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` is on PATH (or is an existing path).
pub fn on_path(program: &str) -> bool {
    if Path::new(program).is_absolute() {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Installs the Debian packages whose programs are missing.
/// `wanted` pairs a program with the package that provides it.
pub fn ensure_debian_packages(wanted: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    install_debian_packages(&missing)
}

/// `apt-get install` of `packages` (none: nothing to do), as root or by
/// `sudo`.
fn install_debian_packages(packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {packages:?}");
    let as_root = output(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if as_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    status(&mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(packages);
    status(&mut install).with_context(|| format!("installing {packages:?}"))
}

/// Cargo's home (`$CARGO_HOME`, else `~/.cargo`), where `cargo install`
/// puts programs by default.
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Where `cargo xtask test` installs programs it builds itself: under
/// `~/.cache`, which CI keeps between runs on a machine.
fn tools_cache() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/glimpse/tools"))
}

/// The geckodriver version that `cargo xtask test` installs when none is
/// found (the Firefox tests were checked with it).
const GECKODRIVER: &str = "0.37.1";

/// Installs `geckodriver` (Firefox's WebDriver server, built from crates.io)
/// into the tools cache unless it is on PATH, in `$CARGO_HOME/bin` or in the
/// cache already: the places the browser tests look for it.
pub fn ensure_geckodriver(cargo: &str) -> Result<()> {
    let found = on_path("geckodriver")
        || [cargo_home(), tools_cache()]
            .into_iter()
            .flatten()
            .any(|dir| dir.join("bin/geckodriver").is_file());
    if found {
        return Ok(());
    }
    let root = tools_cache().context("no HOME to keep geckodriver in")?;
    eprintln!(
        "xtask: installing geckodriver {GECKODRIVER} into {} (about 3 minutes on 2 cores, once)",
        root.display()
    );
    let install = |locked: bool| {
        let mut cmd = Command::new(cargo);
        cmd.args(["install", "geckodriver", "--version", GECKODRIVER, "--root"])
            .arg(&root);
        if locked {
            cmd.arg("--locked");
        }
        status(&mut cmd)
    };
    // --locked builds what geckodriver was released with; a registry
    // mirror may lack one of those exact versions, and then only a fresh
    // resolution builds.
    install(true).or_else(|e| {
        eprintln!("xtask: geckodriver --locked failed ({e:#}); trying without --locked");
        install(false)
    })
}

/// The Python tools of the OpenAPI check, pinned: the end-to-end test
/// `openapi` runs them from the venv [`ensure_openapi_tools`] makes.
/// Hypothesis is held at 6.130.12: later releases describe strategies by
/// parsing their lambdas' source, which crashes CPython 3.11 ("AST
/// constructor recursion depth mismatch") inside schemathesis's runs.
const OPENAPI_TOOLS: &[&str] = &[
    "schemathesis==4.32.5",
    "hypothesis==6.130.12",
    "openapi-spec-validator==0.9.0",
];

/// Where the venv lives; `tests/tests/e2e/openapi.rs` looks there too.
fn openapi_venv() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/glimpse/openapi-venv"))
}

/// Makes the venv of [`OPENAPI_TOOLS`] unless it holds exactly those pins
/// already (its `pins.txt`). Debian's `python3` needs `python3-venv` for
/// `python3 -m venv`; it is installed when the module is missing.
pub fn ensure_openapi_tools() -> Result<()> {
    let venv = openapi_venv().context("no HOME to keep the OpenAPI tools in")?;
    let pins = venv.join("pins.txt");
    let wanted = OPENAPI_TOOLS.join("\n");
    let installed = std::fs::read_to_string(&pins).is_ok_and(|p| p == wanted)
        && venv.join("bin/schemathesis").is_file()
        && venv.join("bin/openapi-spec-validator").is_file();
    if installed {
        return Ok(());
    }
    let has_venv = |python: &str| {
        Command::new(python)
            .args(["-c", "import ensurepip, venv"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_venv("python3") {
        install_debian_packages(&["python3-venv"])?;
    }
    eprintln!(
        "xtask: installing {OPENAPI_TOOLS:?} into {} (about a minute, once)",
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    status(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(OPENAPI_TOOLS),
    )?;
    std::fs::write(&pins, wanted).with_context(|| format!("writing {}", pins.display()))
}

/// The program `bin` (a path under `node_modules`) of the npm `package`
/// (`name@version`), installed under target/tools when it is missing or
/// its `--version` does not name the pinned version.
pub fn npm_tool(root: &Path, package: &str, bin: &str) -> Option<PathBuf> {
    let prefix = root.join("target/tools");
    let bin = prefix.join("node_modules").join(bin);
    let pinned = package.rsplit_once('@').map_or(package, |(_, v)| v);
    let installed =
        || output(Command::new(&bin).arg("--version")).is_some_and(|v| names_version(&v, pinned));
    if installed() {
        return Some(bin);
    }
    eprintln!("xtask: installing {package} under {}", prefix.display());
    let ok = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg(package)
        .status()
        .is_ok_and(|s| s.success());
    (ok && installed()).then_some(bin)
}

/// Whether a tool's `--version` output names `version` as a whole word:
/// the tools print it bare (`0.28.2`), after a slash (`vite/7.3.8 linux-x64
/// node-v20.20.2`) or an underscore (`version 132 (version_132)`), so a
/// pin of `13` is not taken for `132`, nor `7.3` for `7.3.8`.
fn names_version(output: &str, version: &str) -> bool {
    output
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .any(|word| word == version)
}

#[cfg(test)]
mod tests {
    use super::names_version;

    #[test]
    fn a_version_is_named_as_a_whole_word_only() {
        let wasm_opt = "wasm-opt version 132 (version_132)\n";
        assert!(names_version(wasm_opt, "132"));
        assert!(!names_version(wasm_opt, "13"));
        assert!(!names_version(wasm_opt, "1320"));
        let vite = "vite/7.3.8 linux-x64 node-v20.20.2\n";
        assert!(names_version(vite, "7.3.8"));
        assert!(!names_version(vite, "7.3"));
        assert!(!names_version(vite, "20.20.2"));
        assert!(names_version("Version 6.0.3\n", "6.0.3"));
        assert!(names_version("0.28.2\n", "0.28.2"));
        assert!(!names_version("0.28.20\n", "0.28.2"));
    }
}
