//! `confab doctor`: can a call work on this machine, and if not, why. One line per item,
//! OK / WARN / FAIL, with what to do. A call can work when nothing FAILs: missing devices
//! only WARN (a person can still see and hear the others).

mod local;
mod network;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One item's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub item: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about a WARN or FAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

impl Check {
    pub fn ok(item: &'static str, detail: impl Into<String>) -> Self {
        Self {
            item,
            status: Status::Ok,
            detail: detail.into(),
            advice: None,
        }
    }

    pub fn warn(item: &'static str, detail: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            item,
            status: Status::Warn,
            detail: detail.into(),
            advice: Some(advice.into()),
        }
    }

    pub fn fail(item: &'static str, detail: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            item,
            status: Status::Fail,
            detail: detail.into(),
            advice: Some(advice.into()),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// The signaling server to check (`ws://` or `wss://`); None: the app's built-in one.
    pub server: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn call_can_work(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The lines a person reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let status = match c.status {
                Status::Ok => "OK",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            out.push_str(&format!("{status:<5}{:<13}{}\n", c.item, c.detail));
            if let Some(a) = &c.advice {
                out.push_str(&format!("{:18}-> {a}\n", ""));
            }
        }
        out.push_str(if self.call_can_work() {
            "A call can work here.\n"
        } else {
            "A call cannot work here until the FAIL lines are fixed.\n"
        });
        out
    }
}

/// Every check: this machine's display, devices and encoder, then the network.
pub async fn run(opts: DoctorOptions) -> Report {
    let mut report = run_local().await;
    report
        .checks
        .extend(network::checks(opts.server.as_deref()).await);
    report
}

/// This machine's checks only (the app before it has a server to check).
pub async fn run_local() -> Report {
    let checks = tokio::task::spawn_blocking(local::checks)
        .await
        .unwrap_or_else(|e| {
            vec![Check::fail(
                "devices",
                format!("the check crashed: {e}"),
                "report this",
            )]
        });
    Report { checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_can_work_with_warnings_but_not_with_a_failure() {
        let mut r = Report {
            checks: vec![
                Check::ok("encoder", "1280x720: 8.1 ms a frame"),
                Check::warn("cameras", "none found", "others will not see you"),
            ],
        };
        assert!(r.call_can_work());
        assert!(r.render().contains("WARN cameras      none found\n"));
        assert!(r.render().ends_with("A call can work here.\n"));
        r.checks
            .push(Check::fail("server", "cannot reach it", "is it running?"));
        assert!(!r.call_can_work());
        let text = r.render();
        assert!(
            text.contains("FAIL server       cannot reach it\n"),
            "{text}"
        );
        assert!(text.contains("-> is it running?"), "{text}");
    }
}
