//! The viewability engine: pure state, an injected clock, no browser.
//!
//! The browser glue feeds it what the page reports (an element's visible
//! ratio and area, the document's visibility, the window's focus) with the
//! time of each report, and asks it for the impressions that follow. Times are
//! milliseconds on one monotonic clock (`performance.now()` in the browser).
//!
//! The rule (IAB/MRC display): an element is *measurable* once it has been
//! observed with a non-zero area; it is *viewable* once at least
//! `min_ratio` of its pixels (`large_ratio` when its area is at least
//! `large_pixels`) stayed in the viewport for `min_visible_ms` continuous
//! milliseconds while the document was visible and the window focused. Each
//! is reported at most once per slot and page view.

/// The thresholds of the rule; every one is an option of the SDK.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    /// Share of pixels that must be in view (0..=1).
    pub min_ratio: f64,
    /// Continuous time in view, in milliseconds.
    pub min_visible_ms: f64,
    /// Area, in CSS pixels, from which an ad counts as large.
    pub large_pixels: f64,
    /// Share of pixels that must be in view for a large ad (0..=1).
    pub large_ratio: f64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            min_ratio: 0.5,
            min_visible_ms: 1000.0,
            large_pixels: 242_500.0,
            large_ratio: 0.3,
        }
    }
}

impl Rule {
    /// The share of pixels an element of `area` pixels needs in view.
    pub fn required_ratio(&self, area: f64) -> f64 {
        if area >= self.large_pixels {
            self.large_ratio
        } else {
            self.min_ratio
        }
    }
}

/// What an impression reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Measurable,
    Viewable,
}

impl Kind {
    /// The wire name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Measurable => "measurable",
            Kind::Viewable => "viewable",
        }
    }
}

/// A handle to one observed slot.
pub type SlotId = u32;

/// One impression the engine decided on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impression {
    pub slot: SlotId,
    pub ad_id: String,
    pub kind: Kind,
}

#[derive(Debug)]
struct Slot {
    id: SlotId,
    ad_id: String,
    area: f64,
    ratio: f64,
    measured: bool,
    viewed: bool,
    /// When the rule started to hold without a break, if it holds.
    since: Option<f64>,
}

/// The state of every observed slot on one page.
#[derive(Debug)]
pub struct Engine {
    rule: Rule,
    slots: Vec<Slot>,
    visible: bool,
    focused: bool,
    next_id: SlotId,
}

impl Engine {
    /// A page whose document is `visible` and whose window has `focused`.
    pub fn new(rule: Rule, visible: bool, focused: bool) -> Self {
        Engine {
            rule,
            slots: Vec::new(),
            visible,
            focused,
            next_id: 1,
        }
    }

    /// Starts following a slot showing `ad_id`; nothing is known of its
    /// geometry until [`Engine::update`].
    pub fn add(&mut self, ad_id: &str) -> SlotId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.slots.push(Slot {
            id,
            ad_id: ad_id.into(),
            area: 0.0,
            ratio: 0.0,
            measured: false,
            viewed: false,
            since: None,
        });
        id
    }

    /// Stops following a slot; its dwell is cancelled.
    pub fn remove(&mut self, slot: SlotId) {
        self.slots.retain(|s| s.id != slot);
    }

    /// How many slots are followed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot is followed.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The ad a slot shows.
    pub fn ad_id(&self, slot: SlotId) -> Option<&str> {
        self.slots
            .iter()
            .find(|s| s.id == slot)
            .map(|s| s.ad_id.as_str())
    }

    /// The slot now shows another ad (an ad refresh): a new impression.
    pub fn set_ad_id(&mut self, slot: SlotId, ad_id: &str, now: f64, out: &mut Vec<Impression>) {
        self.tick(now, out);
        if let Some(s) = self.slots.iter_mut().find(|s| s.id == slot) {
            if s.ad_id != ad_id {
                s.ad_id = ad_id.into();
                s.measured = false;
                s.viewed = false;
                s.since = None;
            }
        }
        self.refresh(now, out);
    }

    /// The element of `slot` now has `ratio` of its `area` pixels in view.
    pub fn update(
        &mut self,
        slot: SlotId,
        ratio: f64,
        area: f64,
        now: f64,
        out: &mut Vec<Impression>,
    ) {
        self.tick(now, out);
        if let Some(s) = self.slots.iter_mut().find(|s| s.id == slot) {
            s.ratio = ratio;
            s.area = area;
        }
        self.refresh(now, out);
    }

    /// The document became visible or hidden, the window gained or lost focus.
    pub fn set_page(&mut self, visible: bool, focused: bool, now: f64, out: &mut Vec<Impression>) {
        self.tick(now, out);
        self.visible = visible;
        self.focused = focused;
        self.refresh(now, out);
    }

    /// A new page view (a route change in a single-page app): every slot
    /// may count again.
    pub fn pageview(&mut self, now: f64, out: &mut Vec<Impression>) {
        self.tick(now, out);
        for s in &mut self.slots {
            s.measured = false;
            s.viewed = false;
            s.since = None;
        }
        self.refresh(now, out);
    }

    /// Reports the slots whose dwell completed by `now`.
    pub fn tick(&mut self, now: f64, out: &mut Vec<Impression>) {
        let need = self.rule.min_visible_ms;
        for s in &mut self.slots {
            if let (false, Some(since)) = (s.viewed, s.since) {
                if now - since >= need {
                    s.viewed = true;
                    out.push(Impression {
                        slot: s.id,
                        ad_id: s.ad_id.clone(),
                        kind: Kind::Viewable,
                    });
                }
            }
        }
    }

    /// The earliest time at which [`Engine::tick`] may report something.
    pub fn next_deadline(&self) -> Option<f64> {
        self.slots
            .iter()
            .filter(|s| !s.viewed)
            .filter_map(|s| s.since)
            .map(|since| since + self.rule.min_visible_ms)
            .reduce(f64::min)
    }

    /// Brings every slot's measured flag and dwell start in line with the
    /// current state, then reports what completed (a zero dwell counts at once).
    fn refresh(&mut self, now: f64, out: &mut Vec<Impression>) {
        let page_ok = self.visible && self.focused;
        for s in &mut self.slots {
            if s.area > 0.0 && !s.measured {
                s.measured = true;
                out.push(Impression {
                    slot: s.id,
                    ad_id: s.ad_id.clone(),
                    kind: Kind::Measurable,
                });
            }
            let holds = page_ok && s.area > 0.0 && s.ratio >= self.rule.required_ratio(s.area);
            s.since = match (holds, s.since) {
                (true, Some(t)) => Some(t),
                (true, None) => Some(now),
                (false, _) => None,
            };
        }
        self.tick(now, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: f64 = 300.0 * 250.0;

    fn engine() -> Engine {
        Engine::new(Rule::default(), true, true)
    }

    fn kinds(out: &[Impression]) -> Vec<(&str, Kind)> {
        out.iter().map(|i| (i.ad_id.as_str(), i.kind)).collect()
    }

    fn viewables(out: &[Impression]) -> usize {
        out.iter().filter(|i| i.kind == Kind::Viewable).count()
    }

    #[test]
    fn visible_ad_is_measurable_then_viewable_after_exactly_one_second() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("ad-1");
        assert!(out.is_empty());
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        assert_eq!(kinds(&out), [("ad-1", Kind::Measurable)]);
        assert_eq!(e.next_deadline(), Some(1000.0));
        e.tick(999.9, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(1000.0, &mut out);
        assert_eq!(kinds(&out)[1], ("ad-1", Kind::Viewable));
        e.tick(5000.0, &mut out);
        e.update(s, 1.0, SMALL, 6000.0, &mut out);
        assert_eq!(out.len(), 2, "one of each per page view");
        assert_eq!(e.next_deadline(), None);
    }

    #[test]
    fn zero_area_is_not_measurable() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("ad-1");
        e.update(s, 0.0, 0.0, 0.0, &mut out);
        e.update(s, 1.0, 0.0, 10.0, &mut out);
        e.tick(5000.0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn below_the_fold_is_measurable_only_until_scrolled_in_for_a_second() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("ad-1");
        e.update(s, 0.0, SMALL, 0.0, &mut out);
        e.tick(10_000.0, &mut out);
        assert_eq!(kinds(&out), [("ad-1", Kind::Measurable)]);
        assert_eq!(e.next_deadline(), None);
        e.update(s, 0.8, SMALL, 20_000.0, &mut out);
        e.tick(20_999.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(21_000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn ratio_exactly_half_counts_and_just_below_does_not() {
        let mut e = engine();
        let mut out = Vec::new();
        let a = e.add("a");
        let b = e.add("b");
        e.update(a, 0.5, SMALL, 0.0, &mut out);
        e.update(b, 0.499_999, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        let v: Vec<_> = out.iter().filter(|i| i.kind == Kind::Viewable).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ad_id, "a");
    }

    #[test]
    fn forty_percent_is_not_viewable() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a");
        e.update(s, 0.4, SMALL, 0.0, &mut out);
        e.tick(60_000.0, &mut out);
        assert_eq!(viewables(&out), 0);
    }

    #[test]
    fn large_ad_threshold_is_at_242_500_pixels() {
        let mut e = engine();
        let mut out = Vec::new();
        let big = e.add("big");
        let almost = e.add("almost");
        e.update(big, 0.35, 242_500.0, 0.0, &mut out);
        e.update(almost, 0.35, 242_499.0, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        let v: Vec<_> = out.iter().filter(|i| i.kind == Kind::Viewable).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ad_id, "big");
        // 970x250 is large; 30% exactly holds, 29% does not.
        let mut e = engine();
        let mut out = Vec::new();
        let a = e.add("a");
        let b = e.add("b");
        e.update(a, 0.3, 970.0 * 250.0, 0.0, &mut out);
        e.update(b, 0.29, 970.0 * 250.0, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn scrolled_away_at_600_ms_resets_the_clock() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a");
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.update(s, 0.0, SMALL, 600.0, &mut out);
        e.tick(5000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.update(s, 1.0, SMALL, 6000.0, &mut out);
        e.tick(6600.0, &mut out);
        assert_eq!(viewables(&out), 0, "a new dwell starts from zero");
        e.tick(7000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn focus_lost_at_999_ms_is_not_viewable() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a");
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.set_page(true, false, 999.0, &mut out);
        e.tick(10_000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.set_page(true, true, 10_000.0, &mut out);
        e.tick(10_999.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(11_000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn hidden_then_visible_again_needs_a_full_second() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a");
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.set_page(false, true, 500.0, &mut out);
        e.tick(3000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        assert_eq!(e.next_deadline(), None);
        e.set_page(true, true, 3000.0, &mut out);
        assert_eq!(e.next_deadline(), Some(4000.0));
        e.tick(3999.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(4000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn a_page_starting_hidden_or_unfocused_counts_nothing_until_it_is_not() {
        let mut e = Engine::new(Rule::default(), false, true);
        let mut out = Vec::new();
        let s = e.add("a");
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.tick(5000.0, &mut out);
        assert_eq!(kinds(&out), [("a", Kind::Measurable)]);
        e.set_page(true, true, 5000.0, &mut out);
        e.tick(6000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn a_late_report_still_counts_a_completed_dwell() {
        // The timer was late; the element left at 1,005 ms after 1,005 ms in view.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a");
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.update(s, 0.0, SMALL, 1005.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn removed_mid_dwell_cancels() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a");
        let t = e.add("b");
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.update(t, 1.0, SMALL, 200.0, &mut out);
        e.remove(s);
        assert_eq!(e.next_deadline(), Some(1200.0));
        e.tick(2000.0, &mut out);
        let v: Vec<_> = out.iter().filter(|i| i.kind == Kind::Viewable).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ad_id, "b");
        assert_eq!(e.len(), 1);
        assert_eq!(e.ad_id(s), None);
    }

    #[test]
    fn ad_refresh_is_a_new_impression() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a");
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        e.set_ad_id(s, "a", 1500.0, &mut out);
        assert_eq!(out.len(), 2, "the same ad id is no refresh");
        e.set_ad_id(s, "b", 2000.0, &mut out);
        assert_eq!(kinds(&out)[2], ("b", Kind::Measurable));
        e.tick(2999.0, &mut out);
        assert_eq!(out.len(), 3);
        e.tick(3000.0, &mut out);
        assert_eq!(kinds(&out)[3], ("b", Kind::Viewable));
    }

    #[test]
    fn pageview_counts_again_but_not_twice_per_view() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a");
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        e.pageview(2000.0, &mut out);
        e.tick(3000.0, &mut out);
        e.tick(9000.0, &mut out);
        assert_eq!(
            kinds(&out),
            [
                ("a", Kind::Measurable),
                ("a", Kind::Viewable),
                ("a", Kind::Measurable),
                ("a", Kind::Viewable)
            ]
        );
    }

    #[test]
    fn thresholds_are_options() {
        let rule = Rule {
            min_ratio: 0.8,
            min_visible_ms: 2000.0,
            large_pixels: 1000.0,
            large_ratio: 0.6,
        };
        let mut e = Engine::new(rule, true, true);
        let mut out = Vec::new();
        let small = e.add("small");
        let large = e.add("large");
        e.update(small, 0.7, 999.0, 0.0, &mut out);
        e.update(large, 0.6, 1000.0, 0.0, &mut out);
        e.tick(1999.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(2000.0, &mut out);
        let v: Vec<_> = out.iter().filter(|i| i.kind == Kind::Viewable).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ad_id, "large");
        // A zero dwell counts at once.
        let mut e = Engine::new(
            Rule {
                min_visible_ms: 0.0,
                ..Rule::default()
            },
            true,
            true,
        );
        let mut out = Vec::new();
        let s = e.add("a");
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn small_moves_in_view_keep_the_clock() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a");
        e.update(s, 0.6, SMALL, 0.0, &mut out);
        e.update(s, 1.0, SMALL, 300.0, &mut out);
        e.update(s, 0.55, SMALL, 700.0, &mut out);
        e.set_page(true, true, 800.0, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }
}
