//! A real headless Chromium (Debian's `chromium`) driven over WebDriver by
//! `chromedriver`, through the `fantoccini` crate, behind a blocking API.
//!
//! Each [`Browser`] has its own chromedriver on a free loopback port (port 0;
//! the driver prints the one it bound), its own fresh profile directory, and
//! its own Tokio runtime. Readiness is polled with a deadline; the session is
//! closed and the driver killed by its pid on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::edge::{wait_until, workspace_root};

/// How long the driver and the browser may take to come up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// Debian's Chromium binary (the `/usr/bin/chromium` wrapper is noisier).
const CHROMIUM: &str = "/usr/lib/chromium/chromium";
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

/// Whether Chromium and chromedriver are installed.
pub fn available() -> bool {
    std::path::Path::new(CHROMIUM).exists()
        && Command::new("chromedriver")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// A headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A session with the default viewport, [`WIDTH`] x [`HEIGHT`].
    pub fn start() -> Browser {
        Self::start_with_size(WIDTH, HEIGHT)
    }

    /// A session whose window is `width` x `height`.
    pub fn start_with_size(width: u32, height: u32) -> Browser {
        Self::launch(width, height, None)
    }

    /// A session with the default viewport whose `User-Agent` is
    /// `user_agent` instead of Chromium's own (`HeadlessChrome/...`).
    pub fn start_with_user_agent(user_agent: &str) -> Browser {
        Self::launch(WIDTH, HEIGHT, Some(user_agent))
    }

    fn launch(width: u32, height: u32, user_agent: Option<&str>) -> Browser {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver (apt-get install -y chromium chromium-driver)");
        let stdout = driver.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port);
                }
            }
        });
        let port = match rx.recv_timeout(STARTUP_DEADLINE) {
            Ok(port) => port,
            Err(_) => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("chromedriver did not report its port within {STARTUP_DEADLINE:?}");
            }
        };
        let url = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            rt,
            client: None,
            driver,
            _profile: profile,
        };
        wait_until(STARTUP_DEADLINE, "chromedriver is ready", &mut || {
            ureq::get(&format!("{url}/status"))
                .timeout(Duration::from_secs(2))
                .call()
                .ok()
                .and_then(|r| r.into_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true))
        });
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
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        if let Some(ua) = user_agent {
            args.push(format!("--user-agent={ua}"));
        }
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let client = browser.rt.block_on(async {
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&url)
                .await
        });
        browser.client = Some(client.expect("open a Chromium session"));
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.client().execute(script, args))
            .unwrap_or_else(|e| panic!("execute {script}: {e}"))
    }

    /// Runs `script` that calls `arguments[arguments.length - 1](result)`.
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.client().execute_async(script, args))
            .unwrap_or_else(|e| panic!("execute_async {script}: {e}"))
    }

    /// Presses Tab in the focused element (the page body at first).
    pub fn press_tab(&self) {
        self.rt.block_on(async {
            let focused = self
                .client()
                .active_element()
                .await
                .expect("active element");
            // WebDriver's code point for the Tab key.
            focused.send_keys("\u{E004}").await.expect("press Tab");
        });
    }

    /// A PNG of the viewport, written to `path` (parents created).
    pub fn screenshot(&self, path: &std::path::Path) {
        let png = self
            .rt
            .block_on(self.client().screenshot())
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot directory");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Opens a new tab and returns to the current one's handle afterwards:
    /// the session needs a window left when a test closes the page.
    pub fn open_spare_tab(&self) {
        self.rt.block_on(async {
            let current = self.client().window().await.expect("window handle");
            self.client().new_window(true).await.expect("new tab");
            self.client()
                .switch_to_window(current)
                .await
                .expect("switch back");
        });
    }

    /// Closes the current page (it gets `pagehide`) and moves to another tab.
    pub fn close_page(&self) {
        self.rt.block_on(async {
            let client = self.client();
            client.close_window().await.expect("close the page");
            let left = client.windows().await.expect("window handles");
            let next = left.into_iter().next().expect("a spare tab is open");
            client.switch_to_window(next).await.expect("switch tab");
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
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
