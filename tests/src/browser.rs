//! Real browsers of three engines, driven over WebDriver through the
//! `fantoccini` crate, behind a blocking API:
//!
//! | [`Engine`] | browser | driver |
//! |---|---|---|
//! | Chromium | Debian's `chromium`, headless | `chromedriver` (`chromium-driver`) |
//! | Firefox | Debian's `firefox-esr`, `-headless` | `geckodriver` (crates.io) |
//! | WebKit | WebKitGTK's `MiniBrowser` on a private Xvfb display | `WebKitWebDriver` (`webkit2gtk-driver`) |
//!
//! Each [`Browser`] has its own driver on a free loopback port (readiness is
//! polled on `/status` with a deadline), its own fresh profile directory, its
//! own Tokio runtime and, for WebKit, its own X server. The driver runs in a
//! process group of its own, so on drop the session is closed and then the
//! whole group (driver, browser and the browser's helper processes) is
//! killed by the driver's pid; a WebKit session's X server is killed by its
//! pid after that.
//!
//! Every page gets a viewport of exactly the size asked for (the window is
//! resized by the browser's own frame), so a test's geometry means the same
//! in every engine.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::edge::{poll, workspace_root};
use crate::redis::free_port;

/// How long the driver and the browser may take to come up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// How many free ports a driver is tried on before the start fails: another
/// process may take a port between picking it and the driver binding it.
const START_ATTEMPTS: usize = 3;
/// How long a resized window may take to show its new viewport before the
/// size is asked for again.
const RESIZE_WAIT: Duration = Duration::from_secs(1);
/// Debian's Chromium binary (the `/usr/bin/chromium` wrapper is noisier).
const CHROMIUM: &str = "/usr/lib/chromium/chromium";
/// Debian's Firefox ESR.
const FIREFOX: &str = "/usr/bin/firefox-esr";
/// The Debian package that ships WebKitGTK's `MiniBrowser`, whose version is
/// the engine's (MiniBrowser itself cannot start without a display).
const WEBKIT_PACKAGE: &str = "libwebkit2gtk-4.1-0";
/// The viewport of every test page.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 720;

/// Browser tests measure time (the 1 s rule): run them one at a time so they
/// do not compete for the CPU.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Size of `data` compressed with gzip -9, as a server would send it.
pub fn gzip9(data: &[u8]) -> usize {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("in-memory write");
    enc.finish().expect("in-memory write").len()
}

/// `sdk/pkg`, built once per test run by `cargo xtask sdk` (skipped when
/// `GLIMPSE_SDK_PREBUILT=1` says the caller built it already).
pub fn sdk_pkg() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let pkg = root.join("sdk/pkg");
            if std::env::var_os("GLIMPSE_SDK_PREBUILT").is_none_or(|v| v != "1") {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let status = Command::new(cargo)
                    .current_dir(&root)
                    .args(["xtask", "sdk"])
                    .status()
                    .expect("run cargo xtask sdk");
                assert!(status.success(), "cargo xtask sdk failed: {status}");
            }
            assert!(
                pkg.join("glimpse.js").exists(),
                "{} has no SDK",
                pkg.display()
            );
            pkg
        })
        .clone()
}

/// Whether Chromium and chromedriver are installed (the engine of
/// [`Browser::start`]).
pub fn available() -> bool {
    Engine::Chromium.available()
}

/// What Firefox does differently when a page is closed, for the tests that
/// skip a step because of it.
pub const FIREFOX_CLOSE_LOSES_BEACONS: &str = "Firefox ends a site's content process \
    as its last tab closes, racing what that page's `pagehide` sends: a bare \
    sendBeacon from there arrived in 12 of 18 closes (Firefox 153 ESR), the SDK's \
    delivery in all but one of some twenty, and both in every close with another \
    tab of the site open";

/// A browser engine the tests run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Blink, in Debian's Chromium (Chrome, Edge, Opera, Samsung Internet).
    Chromium,
    /// Gecko, in Debian's Firefox ESR.
    Firefox,
    /// WebKit, in WebKitGTK's MiniBrowser (the engine of Safari).
    WebKit,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Chromium, Engine::Firefox, Engine::WebKit];

    /// `chromium`, `firefox` or `webkit`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Chromium => "chromium",
            Engine::Firefox => "firefox",
            Engine::WebKit => "webkit",
        }
    }

    /// Whether the browser, its driver and (WebKit) the X server are installed.
    pub fn available(self) -> bool {
        match self {
            Engine::Chromium => Path::new(CHROMIUM).exists() && runs("chromedriver"),
            Engine::Firefox => Path::new(FIREFOX).exists() && geckodriver().is_some(),
            Engine::WebKit => {
                minibrowser().exists() && on_path("WebKitWebDriver") && on_path("Xvfb")
            }
        }
    }

    /// The installed browser's version, e.g. `156.0.8078.114`, `153.8.0esr`
    /// or `2.50.6`; `unknown` when it cannot be read.
    pub fn version(self) -> String {
        let read = match self {
            Engine::Chromium => stdout_of(Command::new(CHROMIUM).arg("--version"))
                .and_then(|v| Some(v.trim().strip_prefix("Chromium ")?.to_owned())),
            Engine::Firefox => stdout_of(Command::new(FIREFOX).arg("--version"))
                .and_then(|v| Some(v.trim().strip_prefix("Mozilla Firefox ")?.to_owned())),
            // Debian's version is upstream-debian: `2.50.6-1~deb12u2`.
            Engine::WebKit => stdout_of(Command::new("dpkg-query").args([
                "-W",
                "-f",
                "${Version}",
                WEBKIT_PACKAGE,
            ]))
            .and_then(|v| Some(v.split('-').next()?.to_owned()))
            .filter(|v| !v.is_empty()),
        };
        read.unwrap_or_else(|| "unknown".into())
    }

    /// What to install when the engine is not [`available`](Self::available).
    fn install_hint(self) -> &'static str {
        match self {
            Engine::Chromium => "apt-get install -y chromium chromium-driver",
            Engine::Firefox => "apt-get install -y firefox-esr; cargo install geckodriver",
            Engine::WebKit => "apt-get install -y webkit2gtk-driver xvfb",
        }
    }

    /// The driver's command line, listening on `127.0.0.1:port`.
    fn driver(self, port: u16, profile: &Path) -> Command {
        match self {
            Engine::Chromium => {
                let mut cmd = Command::new("chromedriver");
                cmd.arg(format!("--port={port}"));
                cmd
            }
            Engine::Firefox => {
                let mut cmd = Command::new(geckodriver().expect("checked by available()"));
                cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    // Its throwaway profile goes inside this session's own directory.
                    .arg("--profile-root")
                    .arg(profile);
                cmd
            }
            Engine::WebKit => {
                let mut cmd = Command::new("WebKitWebDriver");
                cmd.args([format!("--port={port}"), "--host=127.0.0.1".into()])
                    // Automation sessions keep website data in memory; anything
                    // else WebKitGTK writes stays in this session's directory.
                    .env("XDG_DATA_HOME", profile.join("data"))
                    .env("XDG_CONFIG_HOME", profile.join("config"));
                cmd
            }
        }
    }

    /// The capabilities of a new session.
    fn capabilities(
        self,
        width: u32,
        height: u32,
        profile: &Path,
        user_agent: Option<&str>,
    ) -> Capabilities {
        let mut caps = Capabilities::new();
        match self {
            Engine::Chromium => {
                let mut args = vec![
                    "--headless".to_owned(),
                    "--no-sandbox".to_owned(),
                    "--disable-gpu".to_owned(),
                    "--disable-quic".to_owned(),
                    "--no-first-run".to_owned(),
                    "--disable-background-networking".to_owned(),
                    "--disable-component-update".to_owned(),
                    "--disable-sync".to_owned(),
                    "--disable-dev-shm-usage".to_owned(),
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ];
                if let Some(ua) = user_agent {
                    args.push(format!("--user-agent={ua}"));
                }
                caps.insert(
                    "goog:chromeOptions".into(),
                    json!({"binary": CHROMIUM, "args": args}),
                );
            }
            Engine::Firefox => {
                caps.insert(
                    "moz:firefoxOptions".into(),
                    json!({
                        "binary": FIREFOX,
                        "args": ["-headless", format!("--width={width}"), format!("--height={height}")],
                        "prefs": {
                            // CSS pixels are device pixels, as in the other engines,
                            // so an ad's visible share is the same number everywhere.
                            "layout.css.devPixelsPerPx": "1.0",
                            // The machines have no network beyond loopback: no
                            // background connections that only fail.
                            "network.captive-portal-service.enabled": false,
                            "network.connectivity-service.enabled": false,
                            "browser.safebrowsing.update.enabled": false,
                            "app.update.auto": false,
                            "datareporting.policy.dataSubmissionEnabled": false,
                            "toolkit.telemetry.enabled": false
                        }
                    }),
                );
            }
            Engine::WebKit => {
                caps.insert(
                    "webkitgtk:browserOptions".into(),
                    json!({"binary": minibrowser(), "args": ["--automation"]}),
                );
            }
        }
        caps
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Defines one `#[test]` per engine for a browser test: the function's body
/// runs with `$engine` bound to each [`Engine`], in a module named after the
/// function, so libtest reports `the_test::chromium`, `the_test::firefox`
/// and `the_test::webkit` and a failure names its engine.
///
/// ```no_run
/// use glimpse_tests::browser::Browser;
///
/// glimpse_tests::in_every_engine! {
///     fn counts_an_ad(engine) {
///         let b = Browser::start_in(engine);
///         b.goto("http://127.0.0.1:8080/ads.html");
///     }
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! in_every_engine {
    ($(#[$meta:meta])* fn $name:ident($engine:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($engine: $crate::browser::Engine) $body

            #[test]
            fn chromium() {
                run($crate::browser::Engine::Chromium)
            }

            #[test]
            fn firefox() {
                run($crate::browser::Engine::Firefox)
            }

            #[test]
            fn webkit() {
                run($crate::browser::Engine::WebKit)
            }
        }
    };
}

/// A browser session in one engine.
#[derive(Debug)]
pub struct Browser {
    engine: Engine,
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    // Fields drop in this order, after `drop` closed the session: the
    // driver's group, then the X server, then the profile they wrote to.
    _driver: ProcessGroup,
    _display: Option<XServer>,
    profile: tempfile::TempDir,
}

impl Browser {
    /// A Chromium session with the default viewport, [`WIDTH`] x [`HEIGHT`].
    pub fn start() -> Browser {
        Self::start_in(Engine::Chromium)
    }

    /// A Chromium session whose viewport is `width` x `height`.
    pub fn start_with_size(width: u32, height: u32) -> Browser {
        Self::start_in_with_size(Engine::Chromium, width, height)
    }

    /// A Chromium session with the default viewport whose `User-Agent` is
    /// `user_agent` instead of Chromium's own (`HeadlessChrome/...`).
    pub fn start_with_user_agent(user_agent: &str) -> Browser {
        Self::launch(Engine::Chromium, WIDTH, HEIGHT, Some(user_agent))
    }

    /// A session in `engine` with the default viewport.
    pub fn start_in(engine: Engine) -> Browser {
        Self::start_in_with_size(engine, WIDTH, HEIGHT)
    }

    /// A session in `engine` whose viewport is `width` x `height`.
    pub fn start_in_with_size(engine: Engine, width: u32, height: u32) -> Browser {
        Self::launch(engine, width, height, None)
    }

    /// The engine this session runs in.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    fn launch(engine: Engine, width: u32, height: u32, user_agent: Option<&str>) -> Browser {
        assert!(
            engine.available(),
            "{engine}: not installed ({}; `cargo xtask test` installs it)",
            engine.install_hint()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let profile = tempfile::Builder::new()
            .prefix(&format!("glimpse-{engine}-"))
            .tempdir()
            .expect("profile dir");
        let display =
            (engine == Engine::WebKit).then(|| XServer::start(width, height, profile.path()));
        let (driver, url) = start_driver(engine, profile.path(), display.as_ref());
        let mut browser = Browser {
            engine,
            rt,
            client: None,
            _driver: driver,
            _display: display,
            profile,
        };
        let caps = engine.capabilities(width, height, browser.profile.path(), user_agent);
        let client = browser.rt.block_on(async {
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&url)
                .await
        });
        match client {
            Ok(client) => browser.client = Some(client),
            Err(e) => panic!(
                "{engine}: opening a session failed: {e}\n{}",
                browser.driver_log()
            ),
        }
        browser.fit_viewport(width, height);
        browser
    }

    /// Resizes the window so that the page's viewport is `width` x `height`.
    fn fit_viewport(&self, width: u32, height: u32) {
        let want = (i64::from(width), i64::from(height));
        let viewport = || {
            let v = self.execute("return [innerWidth, innerHeight];", vec![]);
            (v[0].as_i64().unwrap_or(0), v[1].as_i64().unwrap_or(0))
        };
        let client = self.client();
        let started = Instant::now();
        loop {
            let (vw, vh) = viewport();
            if (vw, vh) == want {
                return;
            }
            assert!(
                started.elapsed() < STARTUP_DEADLINE,
                "{}: the viewport stays {vw}x{vh}, not {width}x{height}, however the window is sized",
                self.engine
            );
            let (ww, wh) = self
                .rt
                .block_on(client.get_window_size())
                .unwrap_or_else(|e| panic!("{}: window size: {e}", self.engine));
            // The frame (toolbars, borders) stays the same size when the
            // window grows.
            let size = |viewport: i64, frame: i64| u32::try_from(viewport + frame).unwrap_or(0);
            self.rt
                .block_on(
                    client.set_window_size(
                        size(want.0, ww as i64 - vw),
                        size(want.1, wh as i64 - vh),
                    ),
                )
                .unwrap_or_else(|e| panic!("{}: resize the window: {e}", self.engine));
            // An X window (WebKit) may take the new size a moment later.
            poll(RESIZE_WAIT, &mut || viewport() == want);
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    /// The driver's output so far (it also holds the browser's).
    fn driver_log(&self) -> String {
        let log = self.profile.path().join(DRIVER_LOG);
        std::fs::read_to_string(&log).unwrap_or_else(|e| format!("({}: {e})", log.display()))
    }

    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("{}: goto {url}: {e}", self.engine));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.client().execute(script, args))
            .unwrap_or_else(|e| panic!("{}: execute {script}: {e}", self.engine))
    }

    /// Runs `script` that calls `arguments[arguments.length - 1](result)`.
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.client().execute_async(script, args))
            .unwrap_or_else(|e| panic!("{}: execute_async {script}: {e}", self.engine))
    }

    /// Presses Tab in the focused element (the page body at first).
    pub fn press_tab(&self) {
        self.rt.block_on(async {
            let focused = self
                .client()
                .active_element()
                .await
                .unwrap_or_else(|e| panic!("{}: active element: {e}", self.engine));
            // WebDriver's code point for the Tab key.
            focused
                .send_keys("\u{E004}")
                .await
                .unwrap_or_else(|e| panic!("{}: press Tab: {e}", self.engine));
        });
    }

    /// A PNG of the viewport, written to `path` (parents created).
    pub fn screenshot(&self, path: &Path) {
        let png = self
            .rt
            .block_on(self.client().screenshot())
            .unwrap_or_else(|e| panic!("{}: screenshot: {e}", self.engine));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot directory");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Opens a new blank tab and returns to the current one afterwards:
    /// the session needs a window left when a test closes the page.
    pub fn open_spare_tab(&self) {
        self.open_tab(None);
    }

    /// [`Self::open_spare_tab`] with the new tab showing `url`: a page of the
    /// same site keeps Firefox from ending the site's content process when
    /// the current page closes ([`FIREFOX_CLOSE_LOSES_BEACONS`]).
    pub fn open_spare_tab_on(&self, url: &str) {
        self.open_tab(Some(url));
    }

    fn open_tab(&self, url: Option<&str>) {
        self.rt.block_on(async {
            let client = self.client();
            let current = client.window().await.expect("window handle");
            let opened = client
                .new_window(true)
                .await
                .unwrap_or_else(|e| panic!("{}: new tab: {e}", self.engine));
            if let Some(url) = url {
                client
                    .switch_to_window(opened.handle)
                    .await
                    .unwrap_or_else(|e| panic!("{}: switch to the new tab: {e}", self.engine));
                client
                    .goto(url)
                    .await
                    .unwrap_or_else(|e| panic!("{}: goto {url} in the new tab: {e}", self.engine));
            }
            client
                .switch_to_window(current)
                .await
                .unwrap_or_else(|e| panic!("{}: switch back: {e}", self.engine));
        });
    }

    /// Closes the current page (it gets `pagehide`) and moves to another tab.
    ///
    /// Firefox: what the page sends from `pagehide` may be lost with its
    /// content process ([`FIREFOX_CLOSE_LOSES_BEACONS`]); the harness's own
    /// test skips that check there and says so.
    pub fn close_page(&self) {
        self.rt.block_on(async {
            let client = self.client();
            client
                .close_window()
                .await
                .unwrap_or_else(|e| panic!("{}: close the page: {e}", self.engine));
            let left = client.windows().await.expect("window handles");
            let next = left.into_iter().next().expect("a spare tab is open");
            client
                .switch_to_window(next)
                .await
                .unwrap_or_else(|e| panic!("{}: switch tab: {e}", self.engine));
        });
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
    }
}

/// A driver process leading its own process group (the browser and its
/// helpers are in it too); the whole group is killed on drop.
#[derive(Debug)]
struct ProcessGroup(Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // The browser's processes may have ended with the session, or
            // the leader with them: either signal may find nothing.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// The file in a session's profile directory that collects the driver's
/// output (and the browser's).
const DRIVER_LOG: &str = "driver.log";

/// Starts `engine`'s driver on a free loopback port and waits until its
/// `/status` says it is ready; returns it and its base URL.
fn start_driver(
    engine: Engine,
    profile: &Path,
    display: Option<&XServer>,
) -> (ProcessGroup, String) {
    let log_path = profile.join(DRIVER_LOG);
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port().expect("pick a free port");
        let log = std::fs::File::create(&log_path).expect("create the driver log");
        let mut cmd = engine.driver(port, profile);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            // Its own process group, so that the browser it starts can be
            // killed with it.
            .process_group(0);
        if let Some(x) = display {
            cmd.env("DISPLAY", &x.name).env_remove("WAYLAND_DISPLAY");
        }
        let mut driver = ProcessGroup(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("{engine}: spawn the driver {cmd:?}: {e}")),
        );
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if ready(&url) {
                return (driver, url);
            }
            if let Ok(Some(status)) = driver.0.try_wait() {
                // Most likely the port was taken meanwhile: try another.
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                failures.push(format!("exited with {status} on port {port}: {log}"));
                break;
            }
            if started.elapsed() > STARTUP_DEADLINE {
                panic!(
                    "{engine}: the driver was not ready on port {port} within {STARTUP_DEADLINE:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{engine}: the driver did not start after {START_ATTEMPTS} attempts: {failures:#?}");
}

/// Whether the WebDriver server at `url` answers `/status` with ready.
fn ready(url: &str) -> bool {
    ureq::get(&format!("{url}/status"))
        .timeout(Duration::from_secs(2))
        .call()
        .ok()
        .and_then(|r| r.into_json::<Value>().ok())
        .is_some_and(|v| v["value"]["ready"] == json!(true))
}

/// An X server for a WebKit session (MiniBrowser needs a display), killed
/// by its pid on drop.
#[derive(Debug)]
struct XServer {
    child: Child,
    /// The display, `:N`.
    name: String,
}

impl XServer {
    /// Starts `Xvfb` on a display number it picks itself (free, whatever
    /// else runs on the machine), with a screen larger than the window.
    fn start(width: u32, height: u32, profile: &Path) -> XServer {
        let log_path = profile.join("xvfb.log");
        let log = std::fs::File::create(&log_path).expect("create the X server log");
        let mut child = Command::new("Xvfb")
            // Writes the display number to stdout once clients can connect.
            .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0"])
            .arg(format!("{}x{}x24", width + 400, height + 400))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn Xvfb (apt-get install -y xvfb)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut x = XServer {
            child,
            name: String::new(),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(STARTUP_DEADLINE) {
            Ok(line) if !line.trim().is_empty() => x.name = format!(":{}", line.trim()),
            _ => panic!(
                "Xvfb did not report a display within {STARTUP_DEADLINE:?}: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ),
        }
        x
    }
}

impl Drop for XServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// WebKitGTK's MiniBrowser, in Debian's multiarch library directory.
fn minibrowser() -> PathBuf {
    PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu/webkit2gtk-4.1/MiniBrowser",
        std::env::consts::ARCH
    ))
}

/// `geckodriver` on PATH, else where `cargo install` puts it
/// (`$CARGO_HOME/bin`, `~/.cargo/bin`), else in the tools cache that
/// `cargo xtask test` installs it into (`~/.cache/glimpse/tools/bin`).
fn geckodriver() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(cargo_home.map(|c| c.join("bin")))
        .chain(home.map(|h| h.join(".cache/glimpse/tools/bin")))
        .map(|dir| dir.join("geckodriver"))
        .find(|p| p.is_file())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|dir| dir.join(program).is_file()))
}

/// Whether `program --version` runs and succeeds.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn stdout_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
