//! An accessibility smoke check of the demo pages in a real Chromium, at
//! desktop and mobile widths: a language, a title, a name for every control,
//! text contrast of at least WCAG AA, and every control reachable with the
//! Tab key.

use std::time::Duration;

use glimpse_tests::browser::{self, Browser};
use glimpse_tests::edge::{wait_until, workspace_root, Edge, COUNT_AUTOMATION};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);

/// Problems the page reports about itself, as readable strings.
const AUDIT: &str = r#"
const problems = [];
if (!document.documentElement.lang) problems.push('<html> has no lang');
if (!document.title.trim()) problems.push('no <title>');
const visible = el => {
  const s = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  return s.display !== 'none' && s.visibility !== 'hidden' && r.width > 0 && r.height > 0;
};
const controls = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"])')]
  .filter(el => !el.disabled && visible(el));
for (const el of controls) {
  const name = (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
    || (el.labels && [...el.labels].map(l => l.textContent).join(' ')) || el.textContent
    || el.getAttribute('title') || '').trim();
  if (!name) problems.push(`${el.tagName.toLowerCase()}#${el.id || '?'} has no accessible name`);
  if (el.tabIndex < 0) problems.push(`${el.tagName.toLowerCase()}#${el.id || '?'} is not keyboard reachable`);
}
const rgb = c => (c.match(/[\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = el => {
  for (let e = el; e; e = e.parentElement) {
    const s = getComputedStyle(e);
    if (s.backgroundImage && s.backgroundImage !== 'none') return null; // over an image: not judged
    const c = rgb(s.backgroundColor);
    if (c.length >= 3 && (c.length < 4 || c[3] > 0.95)) return c;
  }
  return [255, 255, 255];
};
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const seen = new Set();
while (walker.nextNode()) {
  const el = walker.currentNode.parentElement;
  if (!walker.currentNode.textContent.trim() || !el || seen.has(el) || !visible(el)) continue;
  seen.add(el);
  const bg = background(el);
  if (!bg) continue;
  const s = getComputedStyle(el);
  const fg = rgb(s.color);
  if (fg.length >= 4 && fg[3] < 0.95) continue; // translucent text: blended, not judged
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  const large = parseFloat(s.fontSize) >= 24 || (parseFloat(s.fontSize) >= 18.66 && Number(s.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) {
    problems.push(`contrast ${ratio.toFixed(2)} for "${walker.currentNode.textContent.trim().slice(0, 30)}"`);
  }
}
return problems;
"#;

/// Tabs through the page and answers how many distinct controls took focus.
fn tab_through(b: &Browser, presses: usize) -> Vec<String> {
    let mut focused = Vec::new();
    for _ in 0..presses {
        b.press_tab();
        let id = b.execute(
            "const e = document.activeElement; return e ? (e.id || e.getAttribute('aria-label') || e.textContent.trim().slice(0, 20)) : '';",
            vec![],
        );
        if let Some(id) = id.as_str().filter(|s| !s.is_empty()) {
            if !focused.iter().any(|f| f == id) {
                focused.push(id.to_owned());
            }
        }
    }
    focused
}

#[test]
fn demo_pages_pass_an_accessibility_smoke_check() {
    let _one_at_a_time = browser::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let pkg = browser::sdk_pkg();
    let www = workspace_root().join("www");
    let edge = Edge::start(
        dir.path(),
        &[
            "--www-dir",
            www.to_str().unwrap(),
            "--sdk-dir",
            pkg.to_str().unwrap(),
            COUNT_AUTOMATION,
        ],
    );
    for (width, height) in [(1280, 900), (390, 844)] {
        let b = Browser::start_with_size(width, height);
        for (path, ready) in [
            ("/?delay=0", "return !!window.glimpse;"),
            (
                "/dashboard?live=0",
                "return ['ready','empty'].includes(document.querySelector('main')?.dataset.state);",
            ),
        ] {
            b.goto(&edge.url(path));
            wait_until(DEADLINE, &format!("{path} is ready"), &mut || {
                b.execute(ready, vec![]) == json!(true)
            });
            let problems: Vec<Value> =
                serde_json::from_value(b.execute(AUDIT, vec![])).expect("audit result");
            assert!(problems.is_empty(), "{path} at {width}px: {problems:#?}");
            let focused = tab_through(&b, 8);
            assert!(
                focused.len() >= 3,
                "{path} at {width}px: Tab reached only {focused:?}"
            );
        }
    }
}
