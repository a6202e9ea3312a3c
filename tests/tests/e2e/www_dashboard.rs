//! The advertiser dashboard's time zones, hours and campaigns, in a real
//! headless Chromium against a real edge, on the embedded store and on a
//! real Redis: the demo feed's ads reach the edge with their campaigns, every
//! number the dashboard shows is the edge's answer for the same range and
//! zone, the campaign's reach counts a visitor of two of its ads once, a
//! zone the edge cannot cut is refused with the edge's own message, and the
//! CSV download is byte for byte the edge's `format=csv` answer.

use std::time::Duration;

use glimpse_tests::browser::{self, Browser};
use glimpse_tests::edge::{redis_flags, wait_until, workspace_root, Edge, COUNT_AUTOMATION};
use glimpse_tests::redis::RedisServer;
use glimpse_tests::sdk_page::pause;
use glimpse_wire::Day;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);
const HOUR_MS: i64 = 3_600_000;

/// A visitor opens the demo feed and stays on its first screen: the ads in
/// view count, each with its campaign (`data-campaign-id`). Answers once the
/// edge lists the first ad's campaign and every impression formed so far
/// has been sent (the dwell of the ads in view is over), so nothing more
/// arrives while the dashboard is read.
fn visit_the_feed(b: &Browser, edge: &Edge) {
    b.goto(&edge.url("/?delay=0"));
    wait_until(DEADLINE, "the SDK started on the feed", &mut || {
        b.execute("return !!window.glimpse;", vec![]) == json!(true)
    });
    // The 1 s rule of the ads in view is the behaviour under test.
    pause(1_500);
    let flushed = b.execute_async(
        "const done = arguments[0]; window.glimpse.flush().then(() => done('ok'));",
        vec![],
    );
    assert_eq!(flushed, json!("ok"));
    let day = Day::from_epoch_ms(crate::load::now_ms()).unwrap();
    wait_until(
        DEADLINE,
        "the feed's acme-fall-run campaign is counted",
        &mut || {
            let listing: Value =
                edge.get_json(&format!("/v1/campaigns?from={day}&to={day}&tz=UTC"));
            listing["campaigns"].as_array().is_some_and(|c| {
                c.iter().any(|c| {
                    c["campaign_id"] == json!("acme-fall-run")
                        && c["impressions"].as_u64().is_some_and(|n| n > 0)
                })
            })
        },
    );
}

/// The range and zone the dashboard shows, as a query string for the edge.
fn shown_range(b: &Browser) -> String {
    let shown = b.execute(
        "return [document.getElementById('from').value, document.getElementById('to').value,
                 document.getElementById('tz').value];",
        vec![],
    );
    let tz = shown[2].as_str().unwrap().replace('/', "%2F");
    format!(
        "from={}&to={}&tz={tz}",
        shown[0].as_str().unwrap(),
        shown[1].as_str().unwrap()
    )
}

fn wait_ready(b: &Browser, what: &str) {
    wait_until(DEADLINE, what, &mut || {
        b.execute(
            "return document.querySelector('main')?.dataset.state;",
            vec![],
        ) == json!("ready")
    });
}

/// The `data-value`s of the cells of `selector`'s rows, keyed by `key`.
fn table(b: &Browser, selector: &str, key: &str) -> Value {
    b.execute(
        "const [selector, key] = arguments;
         return Object.fromEntries([...document.querySelectorAll(selector)].map(tr => [tr.dataset[key],
           Object.fromEntries([...tr.querySelectorAll('td')].map(td => [td.dataset.field, td.dataset.value]))]));",
        vec![json!(selector), json!(key)],
    )
}

/// Clicks `button` and answers the text of the CSV file it offers.
fn download(b: &Browser, button: &str) -> Value {
    b.execute_async(
        r#"const [button, done] = arguments;
           const create = URL.createObjectURL;
           URL.createObjectURL = (blob) => { URL.createObjectURL = create; blob.text().then(done); return create(blob); };
           document.getElementById(button).click();"#,
        vec![json!(button)],
    )
}

fn zones_hours_and_campaigns(store_args: &[&str], label: &str) {
    let _one_at_a_time = browser::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let www = workspace_root().join("www");
    let pkg = browser::sdk_pkg();
    let mut args = vec![
        "--www-dir",
        www.to_str().unwrap(),
        "--sdk-dir",
        pkg.to_str().unwrap(),
        "--sync-interval",
        "200ms",
        COUNT_AUTOMATION,
    ];
    args.extend_from_slice(store_args);
    let edge = Edge::start(dir.path(), &args);

    // Two ads of one campaign, seen 2 h and 26 h ago; u2 saw both. A third
    // ad outside the campaign, seen by u1.
    let now = crate::load::now_ms();
    let (recent, older) = (now - 2 * HOUR_MS, now - 26 * HOUR_MS);
    // Each impression as the SDK sends it: measurable, then viewable.
    let event = |id: &str, ad: &str, campaign: Option<&str>, user: &str, ts: i64| {
        ["measurable", "viewable"].map(|kind| {
            let mut e = json!({"id": format!("{id}-{kind}"), "ad_id": ad, "user_id": user,
                               "kind": kind, "ts": ts});
            if let Some(c) = campaign {
                e["campaign_id"] = json!(c);
            }
            e
        })
    };
    let events: Vec<_> = [
        event("a1", "dash-a", Some("dash-camp"), "u1", recent),
        event("a2", "dash-a", Some("dash-camp"), "u2", recent),
        event("b2", "dash-b", Some("dash-camp"), "u2", older),
        event("b3", "dash-b", Some("dash-camp"), "u3", older),
        event("c1", "dash-c", None, "u1", recent),
    ]
    .into_iter()
    .flatten()
    .collect();
    let body = json!({"batch_id": format!("dash-{label}"), "events": events});
    let (status, answer) = edge.post_batch(&body.to_string());
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], json!(10), "{answer}");

    let b = Browser::start_with_size(1280, 1000);
    visit_the_feed(&b, &edge);

    // The campaign view in Tokyo: reach 3 (u2 once), 4 impressions. The
    // feed's last beacon (sent as it was left) may land after the
    // dashboard read its table, so the page is loaded again until it shows
    // the campaigns the edge lists for its range, then compared in full.
    let mut range = String::new();
    wait_until(
        DEADLINE,
        "the dashboard lists the edge's campaigns",
        &mut || {
            b.goto(&edge.url("/dashboard?live=0&tz=Asia/Tokyo&view=campaigns&campaign=dash-camp"));
            wait_ready(&b, "the campaign view loaded");
            range = shown_range(&b);
            let listing: Value = edge.get_json(&format!("/v1/campaigns?{range}"));
            let rows = table(&b, "#campaigns-table tr[data-campaign-id]", "campaignId");
            listing["campaigns"].as_array().unwrap().iter().all(|c| {
                let id = c["campaign_id"].as_str().unwrap();
                rows[id]["impressions"] == json!(c["impressions"].to_string())
            })
        },
    );
    assert!(range.ends_with("tz=Asia%2FTokyo"), "{range}");
    let listing: Value = edge.get_json(&format!("/v1/campaigns?{range}"));
    let campaign = listing["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["campaign_id"] == json!("dash-camp"))
        .unwrap_or_else(|| panic!("dash-camp is listed: {listing}"));
    assert_eq!(campaign["reach"], json!(3), "{listing}");
    assert_eq!(campaign["impressions"], json!(4), "{listing}");
    let rows = table(&b, "#campaigns-table tr[data-campaign-id]", "campaignId");
    for c in listing["campaigns"].as_array().unwrap() {
        let id = c["campaign_id"].as_str().unwrap();
        assert_eq!(
            rows[id]["impressions"],
            json!(c["impressions"].to_string()),
            "{id}: {rows}"
        );
    }
    assert!(
        rows.get("acme-fall-run").is_some(),
        "the feed's campaign: {rows}"
    );
    let row = &rows["dash-camp"];
    for field in ["impressions", "measurable", "reach", "invalid", "ads"] {
        assert_eq!(
            row[field],
            json!(campaign[field].to_string()),
            "{field}: {rows}"
        );
    }
    assert_eq!(
        row["frequency"].as_str().unwrap().parse::<f64>().unwrap(),
        campaign["frequency"].as_f64().unwrap(),
        "{rows}"
    );
    wait_until(
        DEADLINE,
        "the campaign's detail shows its reach",
        &mut || {
            b.execute(
            "return document.querySelector('#campaign-detail dd[data-field=\"reach\"]')?.dataset.value;",
            vec![],
        ) == json!("3")
        },
    );
    let ads = table(&b, "#campaign-ads-body tr[data-ad-id]", "adId");
    let ad_ids: Vec<&String> = ads.as_object().unwrap().keys().collect();
    assert_eq!(
        ad_ids,
        ["dash-a", "dash-b"],
        "only the campaign's ads: {ads}"
    );
    assert_eq!(ads["dash-a"]["unique_visitors"], json!("2"), "{ads}");
    let (status, edge_csv) = edge
        .get_raw(&format!("/v1/campaigns?{range}&format=csv"))
        .unwrap();
    assert_eq!(status, 200, "{edge_csv}");
    assert_eq!(
        download(&b, "download-campaigns-csv"),
        json!(edge_csv),
        "the download is the edge's CSV"
    );
    b.screenshot(
        &workspace_root().join(format!("tests/artifacts/dashboard-campaigns-{label}.png")),
    );

    // The ads view, the last 48 hours of dash-a: its two impressions in the
    // hour they were sent, every hour as the edge answers it.
    b.execute(
        "document.querySelector('[data-view=\"ads\"]').click();",
        vec![],
    );
    wait_ready(&b, "the ads view loaded");
    b.execute(
        "document.querySelector('#ads-table tr[data-ad-id=\"dash-a\"] .row-select').click();",
        vec![],
    );
    wait_until(DEADLINE, "the hours of dash-a are shown", &mut || {
        b.execute(
            "return document.querySelector('#detail')?.dataset.adId === 'dash-a'
                && document.querySelectorAll('#hours-body tr').length > 0;",
            vec![],
        ) == json!(true)
    });
    let hours = table(&b, "#hours-body tr[data-hour]", "hour");
    let hours = hours.as_object().unwrap();
    assert_eq!(hours.len(), 48, "the last 48 hours: {hours:?}");
    let shown_total: u64 = hours
        .values()
        .map(|h| h["impressions"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(shown_total, 2, "{hours:?}");
    let first = hours.keys().next().unwrap();
    let last = hours.keys().next_back().unwrap();
    let (from, to) = (&first[..10], &last[..10]);
    let hourly: Value = edge.get_json(&format!(
        "/v1/ads/dash-a/stats?from={from}&to={to}&tz=Asia%2FTokyo&granularity=hour"
    ));
    for h in hourly["hours"].as_array().unwrap() {
        let Some(shown) = hours.get(h["hour"].as_str().unwrap()) else {
            continue;
        };
        for field in ["impressions", "measurable", "unique_visitors", "invalid"] {
            assert_eq!(shown[field], json!(h[field].to_string()), "{field} at {h}");
        }
    }
    let sent_hour = hourly["hours"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["impressions"] == json!(2))
        .unwrap_or_else(|| panic!("an hour with both impressions: {hourly}"));
    assert_eq!(sent_hour["unique_visitors"], json!(2), "{hourly}");

    // Another zone: the days are New York's, as the edge answers them.
    b.execute(
        "const tz = document.getElementById('tz');
         tz.value = 'America/New_York';
         tz.dispatchEvent(new Event('change', { bubbles: true }));",
        vec![],
    );
    wait_until(DEADLINE, "the days are New York's", &mut || {
        b.execute(
            "return document.getElementById('zone-name').textContent === 'America/New_York'
                && document.querySelector('main').dataset.state === 'ready'
                && document.querySelector('#detail dd[data-field=\"impressions\"]').dataset.value === '2';",
            vec![],
        ) == json!(true)
    });
    let range = shown_range(&b);
    assert!(range.ends_with("tz=America%2FNew_York"), "{range}");
    let stats: Value = edge.get_json(&format!("/v1/ads/dash-a/stats?{range}"));
    let days = table(&b, "#days-body tr[data-day]", "day");
    for d in stats["days"].as_array().unwrap() {
        let shown = &days[d["date"].as_str().unwrap()];
        assert_eq!(
            shown["impressions"],
            json!(d["impressions"].to_string()),
            "{d}: {days}"
        );
        assert_eq!(
            shown["unique_visitors"],
            json!(d["unique_visitors"].to_string()),
            "{d}: {days}"
        );
    }
    assert_eq!(stats["tz"], json!("America/New_York"), "{stats}");
    b.screenshot(&workspace_root().join(format!("tests/artifacts/dashboard-hours-{label}.png")));

    // India's offset is not a whole number of hours: the edge refuses the
    // zone, and the page says what the edge said.
    b.execute(
        "const tz = document.getElementById('tz');
         tz.value = 'Asia/Kolkata';
         tz.dispatchEvent(new Event('change', { bubbles: true }));",
        vec![],
    );
    wait_until(DEADLINE, "the page shows a refusal", &mut || {
        b.execute(
            "return document.querySelector('main').dataset.error;",
            vec![],
        ) == json!("range")
    });
    let range = shown_range(&b);
    assert!(range.ends_with("tz=Asia%2FKolkata"), "{range}");
    let (status, refusal) = edge.get_raw(&format!("/v1/ads?{range}")).unwrap();
    assert_eq!(status, 400, "{refusal}");
    let refusal: Value = serde_json::from_str(&refusal).unwrap();
    assert_eq!(
        refusal["error"]["code"],
        json!("unsupported_tz"),
        "{refusal}"
    );
    let shown = b.execute(
        "return document.getElementById('banner').textContent;",
        vec![],
    );
    assert!(
        shown
            .as_str()
            .unwrap()
            .contains(refusal["error"]["message"].as_str().unwrap()),
        "{shown} says {refusal}"
    );
    let detail = b.execute(
        "return document.getElementById('detail-state').textContent;",
        vec![],
    );
    assert!(
        detail.as_str().unwrap().starts_with("No days to show"),
        "the New York days are not shown under Kolkata: {detail}"
    );
}

#[test]
fn the_dashboard_shows_zones_hours_and_campaigns_on_the_embedded_store() {
    zones_hours_and_campaigns(&[], "embedded");
}

#[test]
fn the_dashboard_shows_zones_hours_and_campaigns_on_the_redis_store() {
    let redis = RedisServer::start();
    let flags = redis_flags(&redis.url());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    zones_hours_and_campaigns(&flags, "redis");
}
