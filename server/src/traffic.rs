//! Invalid traffic: telling known bots from people. Pure: no I/O, no HTTP.
//!
//! Ingest asks [`classify`] once per batch (and once per single-impression
//! request), with the request's `User-Agent` and the `webdriver` flag the SDK
//! reports from `navigator.webdriver`. Events of a batch that is not human are
//! counted as `invalid` instead of as impressions ([`Traffic::Invalid`]), so
//! advertisers see how much was filtered.
//!
//! What this catches is declared automation (headless browsers, drivers
//! that set `navigator.webdriver`) and crawlers that name themselves. It
//! does not catch a bot that sends a desktop browser's user agent and hides
//! `navigator.webdriver`; that needs behavioural or network signals this
//! edge does not have. A missing user agent and plain HTTP clients (`curl`,
//! language HTTP libraries) are not flagged: server-to-server proxies, load
//! generators and tests send those, and they never run the SDK anyway.

/// What kind of client sent a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Nothing known marks it as a bot.
    Human,
    /// A browser driven by a program: a headless browser, or a driver that
    /// sets `navigator.webdriver`. Counted as human with `--count-automation`.
    Automation,
    /// A crawler that names itself. Never counted.
    Crawler,
}

/// How the events of one batch are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Traffic {
    /// As impressions, measurable impressions and visitors.
    Valid,
    /// Only in the (ad, day)'s `invalid` counter.
    Invalid,
}

impl Verdict {
    /// How this verdict counts; `count_automation` is `--count-automation`,
    /// which lets test suites running headless browsers count them.
    pub fn traffic(self, count_automation: bool) -> Traffic {
        match self {
            Verdict::Human => Traffic::Valid,
            Verdict::Automation if count_automation => Traffic::Valid,
            Verdict::Automation | Verdict::Crawler => Traffic::Invalid,
        }
    }

    /// The metric label of a non-human verdict: `automation` or `crawler`.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Verdict::Human => None,
            Verdict::Automation => Some("automation"),
            Verdict::Crawler => Some("crawler"),
        }
    }
}

/// Only this much of a user agent is read: every marker below sits well
/// inside it in real user agents, and it bounds the work a huge header costs.
const MAX_INSPECTED_BYTES: usize = 1024;

/// Markers of browsers run by a program, as they appear in user agents
/// (matched ignoring ASCII case).
const AUTOMATION_MARKERS: &[&str] = &[
    "HeadlessChrome",
    "HeadlessEdg",
    "PhantomJS",
    "SlimerJS",
    "HtmlUnit",
    "jsdom/",
    "Puppeteer",
    "Playwright",
    "Selenium",
    "Chrome-Lighthouse",
];

/// Crawlers by name (matched ignoring ASCII case), including those the
/// generic token rule in [`names_a_crawler`] would miss (`Slurp`,
/// `facebookexternalhit`, `Mediapartners-Google`, `ia_archiver`).
const CRAWLER_NAMES: &[&str] = &[
    "Googlebot",
    "AdsBot-Google",
    "Mediapartners-Google",
    "Google-InspectionTool",
    "bingbot",
    "Slurp",
    "DuckDuckBot",
    "Baiduspider",
    "YandexBot",
    "Applebot",
    "facebookexternalhit",
    "AhrefsBot",
    "SemrushBot",
    "MJ12bot",
    "PetalBot",
    "ia_archiver",
];

/// Endings of a word that names a crawler in a user agent: `SomeBot/1.0`,
/// `Sogou web spider/4.0`, `ExampleCrawler`.
const CRAWLER_SUFFIXES: &[&str] = &["bot", "crawler", "spider"];

/// The verdict on one request: its `User-Agent` (if any) and whether the
/// SDK reported `navigator.webdriver`. A crawler stays a crawler whatever
/// else is true, so `--count-automation` never lets one count.
pub fn classify(user_agent: Option<&str>, webdriver: bool) -> Verdict {
    let ua = user_agent.map_or(&[][..], |ua| {
        let bytes = ua.as_bytes();
        &bytes[..bytes.len().min(MAX_INSPECTED_BYTES)]
    });
    if CRAWLER_NAMES.iter().any(|n| contains_ignore_case(ua, n)) || names_a_crawler(ua) {
        return Verdict::Crawler;
    }
    if webdriver
        || AUTOMATION_MARKERS
            .iter()
            .any(|m| contains_ignore_case(ua, m))
    {
        return Verdict::Automation;
    }
    Verdict::Human
}

/// The generic rule for crawlers not listed by name. A user agent is a list
/// of products (`Name/version`) and comments (`(...; ...)`):
///
/// - a product whose name ends in `bot`, `crawler` or `spider`
///   (`Twitterbot/1.0`, `Baiduspider/2.0`), or
/// - any word that is `bot` or ends in `crawler` or `spider`
///   (`+http://example.com/bot.html`, `Bytespider`).
///
/// A bare word ending in `bot` is not enough: phone models such as
/// `CUBOT_X20_PRO` or `CUBOT P60` sit in the comment of real browsers.
fn names_a_crawler(ua: &[u8]) -> bool {
    let is_delimiter = |b: &u8| matches!(b, b' ' | b';' | b'(' | b')' | b'[' | b']' | b',');
    ua.split(is_delimiter).any(|segment| {
        let (name, is_product) = match segment.iter().position(|&b| b == b'/') {
            Some(slash) => (&segment[..slash], true),
            None => (segment, false),
        };
        if is_product
            && CRAWLER_SUFFIXES
                .iter()
                .any(|s| ends_with_ignore_case(name, s))
        {
            return true;
        }
        segment.split(|b| !b.is_ascii_alphanumeric()).any(|word| {
            word.eq_ignore_ascii_case(b"bot")
                || ends_with_ignore_case(word, "crawler")
                || ends_with_ignore_case(word, "spider")
        })
    })
}

fn contains_ignore_case(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn ends_with_ignore_case(word: &[u8], suffix: &str) -> bool {
    word.len() >= suffix.len()
        && word[word.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real user agents of people's browsers and phones, and of plain HTTP
    /// clients: none is flagged.
    const PEOPLE_AND_HTTP_CLIENTS: &[&str] = &[
        // Desktop browsers.
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        // Phones, Cubot's among them ("bot" inside the model name).
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 9; CUBOT_X20_PRO) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.120 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 12; CUBOT P60) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 8.1.0; CUBOT J3 Build/O11019) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/87.0.4280.101 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 10; KINGKONG 5 Pro Build/QP1A.190711.020; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/95.0.4638.74 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; U; Android 12; en-us; 2201117TG Build/SKQ1.211006.001) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/112.0.5615.136 Mobile Safari/537.36 XiaoMi/MiuiBrowser/14.5.0-gn",
        "Mozilla/5.0 (Linux; Android 12; NOH-NX9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.88 HuaweiBrowser/14.0.2.311 Mobile Safari/537.36",
        // In-app browsers (Facebook's app is not its link crawler).
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone14,2;FBMD/iPhone;FBSN/iOS;FBSV/16.6;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP1A.240405.002; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/123.0.6312.118 Mobile Safari/537.36 Instagram 326.0.0.42.90 Android",
        // Plain HTTP clients: proxies, load generators, tests.
        "curl/8.5.0",
        "ureq/2.12.1",
        "python-requests/2.31.0",
        "Go-http-client/1.1",
        "okhttp/4.12.0",
        "axios/1.6.8",
        "",
    ];

    const CRAWLERS: &[&str] = &[
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.155 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
        "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
        "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
        "Mediapartners-Google",
        "AdsBot-Google (+http://www.google.com/adsbot.html)",
        // Not listed by name: the generic rule.
        "Twitterbot/1.0",
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
        "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
        "Screaming Frog SEO Spider/19.8",
        "ExampleCrawler (contact: ops@example.com)",
        "Mozilla/5.0 (compatible; SomeNewBot/0.1)",
    ];

    const AUTOMATION: &[&str] = &[
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 HeadlessEdg/124.0.2478.51",
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
        "Mozilla/5.0 (linux) AppleWebKit/537.36 (KHTML, like Gecko) jsdom/22.1.0",
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
    ];

    #[test]
    fn people_and_plain_http_clients_are_human() {
        for ua in PEOPLE_AND_HTTP_CLIENTS {
            assert_eq!(classify(Some(ua), false), Verdict::Human, "{ua}");
        }
        assert_eq!(classify(None, false), Verdict::Human);
    }

    #[test]
    fn crawlers_are_crawlers_even_when_they_report_webdriver() {
        for ua in CRAWLERS {
            assert_eq!(classify(Some(ua), false), Verdict::Crawler, "{ua}");
            assert_eq!(classify(Some(ua), true), Verdict::Crawler, "{ua}");
        }
        assert_eq!(
            classify(Some("mozilla/5.0 (compatible; GOOGLEBOT/2.1)"), false),
            Verdict::Crawler,
            "names match ignoring case"
        );
    }

    #[test]
    fn headless_browsers_and_webdriver_are_automation() {
        for ua in AUTOMATION {
            assert_eq!(classify(Some(ua), false), Verdict::Automation, "{ua}");
        }
        // A real browser's user agent, driven by WebDriver.
        assert_eq!(
            classify(Some(PEOPLE_AND_HTTP_CLIENTS[0]), true),
            Verdict::Automation
        );
        assert_eq!(classify(None, true), Verdict::Automation);
    }

    #[test]
    fn only_automation_can_be_let_through() {
        assert_eq!(Verdict::Human.traffic(false), Traffic::Valid);
        assert_eq!(Verdict::Automation.traffic(false), Traffic::Invalid);
        assert_eq!(Verdict::Automation.traffic(true), Traffic::Valid);
        assert_eq!(Verdict::Crawler.traffic(true), Traffic::Invalid);
        assert_eq!(Verdict::Human.reason(), None);
        assert_eq!(Verdict::Automation.reason(), Some("automation"));
        assert_eq!(Verdict::Crawler.reason(), Some("crawler"));
    }

    #[test]
    fn only_the_head_of_a_huge_user_agent_is_read() {
        let padded = format!("Mozilla/5.0 {} Googlebot/2.1", "x".repeat(2000));
        assert_eq!(classify(Some(&padded), false), Verdict::Human);
        let head = format!("Googlebot/2.1 {}", "x".repeat(100_000));
        assert_eq!(classify(Some(&head), false), Verdict::Crawler);
    }
}
