//! `cargo xtask <command>`: the project's build and test helper.
//!
//! - `demo`: builds the SDK, then runs the edge on the embedded store with the
//!   demo site, as a new user would;
//! - `sdk`: builds the browser SDK into `sdk/pkg/` ([`sdk`]);
//! - `test`: installs what the tests need when it is missing, then runs every
//!   check and test ([`test`](mod@test)).
//!
//! Tools this needs from outside the workspace are installed by [`tools`].

mod minify;
mod sdk;
mod test;
mod tools;

use std::process::Command;

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sdk") => sdk::run(),
        Some("test") => test::run(),
        Some("demo") => demo(&args[1..]),
        _ => bail!(
            "usage: cargo xtask <command>\n\n  demo   build the SDK and run the edge with the demo site\n  sdk    build the browser SDK into sdk/pkg/\n  test   install what is missing, then run every check and test"
        ),
    }
}

/// Builds the SDK and runs the server in the foreground; extra arguments go
/// to `glimpse-server`.
fn demo(server_args: &[String]) -> Result<()> {
    sdk::run()?;
    let root = tools::workspace_root();
    eprintln!("xtask demo: the feed is at http://127.0.0.1:8080/ and the dashboard at http://127.0.0.1:8080/dashboard (Ctrl-C stops)");
    tools::status(
        Command::new(tools::cargo())
            .current_dir(&root)
            .args(["run", "--release", "-p", "glimpse-server", "--"])
            .args(server_args),
    )
}
