//! The browser harness itself, in every engine: each `Browser` method the
//! other browser tests use works, and the page gets the viewport asked for.

use std::time::Duration;

use glimpse_tests::browser::{self, Browser, Engine};
use glimpse_tests::edge::{wait_until, workspace_root, Edge, COUNT_AUTOMATION};
use glimpse_wire::api::StatsResponse;
use serde_json::json;

glimpse_tests::in_every_engine! {
    fn every_method_works(engine) {
        let _one_at_a_time = browser::exclusive();
        let dir = tempfile::tempdir().unwrap();
        let www = workspace_root().join("tests/fixtures/browser");
        let edge = Edge::start(
            dir.path(),
            &["--www-dir", www.to_str().unwrap(), "--sync-interval", "100ms", COUNT_AUTOMATION],
        );
        let b = Browser::start_in_with_size(engine, 1000, 600);
        assert_eq!(b.engine(), engine);
        b.goto(&edge.url("/harness.html"));
        assert_eq!(
            b.execute("return [innerWidth, innerHeight];", vec![]),
            json!([1000, 600]),
            "the viewport"
        );
        assert_eq!(
            b.execute("return arguments[0] + 1;", vec![json!(41)]),
            json!(42)
        );
        assert_eq!(
            b.execute_async(
                "const done = arguments[1]; setTimeout(() => done(arguments[0] * 2), 50);",
                vec![json!(21)]
            ),
            json!(42)
        );
        b.press_tab();
        b.press_tab();
        assert_eq!(
            b.execute("return document.activeElement.id;", vec![]),
            json!("second"),
            "two Tabs from the page reach the second button"
        );
        let png = dir.path().join("shot.png");
        b.screenshot(&png);
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");

        b.open_spare_tab();
        let page = b.execute("return location.pathname;", vec![]);
        assert_eq!(page, json!("/harness.html"), "still on the page after opening a tab");
        b.close_page();
        assert_eq!(
            b.execute("return location.href;", vec![]),
            json!("about:blank"),
            "the session goes on in the spare tab"
        );
        // The closed page got `pagehide` and the beacon it sent from there
        // reached the edge.
        if engine == Engine::Firefox {
            eprintln!("{engine}: {}", browser::FIREFOX_CLOSE_LOSES_BEACONS);
            return;
        }
        wait_until(Duration::from_secs(10), "the closed page's beacon is counted", &mut || {
            let s: StatsResponse = edge.get_json("/v1/ads/harness-pagehide/stats");
            s.measurable == 1
        });
    }
}

#[test]
fn every_engine_reports_a_version() {
    for engine in Engine::ALL {
        assert!(engine.available(), "{engine} is not installed");
        let version = engine.version();
        eprintln!("{engine}: {version}");
        assert!(
            version.starts_with(|c: char| c.is_ascii_digit()),
            "{engine}: {version}"
        );
    }
}
