//! The pre-join screen's Check section: it asks the engine thread for the checks of the
//! server in the form and shows the report it gets, one line per item.

use super::*;
use confab::doctor::{Check, Report};

/// The pre-join screen with "Run checks" pressed in its Check section.
fn checks_run((app, mut rig): (App, Rig)) -> (Harness<'static, App>, Rig) {
    let mut h = harness(app);
    h.run();
    sent(&mut rig);
    h.get_by_label("Check").click();
    h.run();
    h.get_by_label("Run checks").click();
    // The spinner keeps repainting while the checks run.
    h.run_steps(2);
    (h, rig)
}

#[test]
fn the_check_panel_runs_the_checks_and_shows_one_line_per_item() {
    let (mut h, mut rig) = checks_run(app());
    assert_eq!(
        sent(&mut rig),
        ["RunChecks(Some(\"ws://127.0.0.1:1/ws\"))"],
        "the server in the form is checked"
    );
    assert!(h.state().model.checks.running);
    let report = Report {
        checks: vec![
            Check::ok("display", "X11 (:0)"),
            Check::warn("cameras", "none found", "others will not see you"),
            Check::fail("server", "cannot connect", "is the server running?"),
        ],
    };
    rig.events.send(UiEvent::Checks(report.clone())).unwrap();
    h.run();
    assert!(!h.state().model.checks.running);
    for c in &report.checks {
        let item = h.get_by_label(c.item).rect();
        let detail = h.get_by_label(&c.detail).rect();
        assert!(
            detail.left() > item.right() && same_line(item, detail),
            "{}: its detail is on its line: {item:?} {detail:?}",
            c.item
        );
        if let Some(a) = &c.advice {
            h.get_by_label(&format!("-> {a}"));
        }
    }
    let status_of = |item: &str| {
        let r = h.get_by_label(item).rect();
        ["OK", "WARN", "FAIL"]
            .into_iter()
            .find(|s| h.query_all_by_label(s).any(|n| same_line(n.rect(), r)))
            .map(str::to_string)
    };
    assert_eq!(status_of("display").as_deref(), Some("OK"));
    assert_eq!(status_of("cameras").as_deref(), Some("WARN"));
    assert_eq!(status_of("server").as_deref(), Some("FAIL"));
    h.get_by_label("A call cannot work here until the FAIL lines are fixed.");
}

#[test]
fn with_no_server_yet_only_this_machine_is_checked() {
    let (_h, mut rig) = checks_run(app_with(""));
    assert_eq!(sent(&mut rig), ["RunChecks(None)"]);
}

/// The two overlap vertically: drawn on one line of the grid.
fn same_line(a: eframe::egui::Rect, b: eframe::egui::Rect) -> bool {
    a.top() < b.bottom() && b.top() < a.bottom()
}
