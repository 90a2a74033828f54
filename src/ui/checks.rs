//! The pre-join screen's "Check" panel without egui: `confab doctor`'s checks run on
//! the engine thread (they open devices and encode for seconds) and their report comes
//! back as an event.

use crate::doctor::Report;

use super::bridge::UiCommand;
use super::model::Model;

#[derive(Debug, Default)]
pub struct CheckPanel {
    /// A run is under way (its report has not come back yet).
    pub running: bool,
    /// The last report, kept until the next run.
    pub report: Option<Report>,
}

impl Model {
    /// Runs the checks: this machine's, and the server's when there is one (configured,
    /// or the built-in one once it runs).
    pub fn run_checks(&mut self) {
        if self.checks.running {
            return;
        }
        self.checks.running = true;
        self.send(UiCommand::RunChecks {
            server: self.server_url(),
        });
    }

    pub(super) fn checks_done(&mut self, report: Report) {
        self.checks.running = false;
        self.checks.report = Some(report);
    }
}
