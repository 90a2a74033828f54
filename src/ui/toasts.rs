//! Short notices in a corner ("Bob joined"): each for a few seconds, newest at the
//! bottom, a few at most. Pure: time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::bridge::UiCommand;
use super::model::Model;

/// How long a toast stays.
pub const TOAST_FOR: Duration = Duration::from_secs(4);
/// More at once is noise (a room filling up): the oldest go first.
const MAX_SHOWN: usize = 4;

#[derive(Debug, Default)]
pub struct Toasts {
    items: VecDeque<(Instant, String)>,
}

impl Toasts {
    pub fn push(&mut self, now: Instant, text: String) {
        self.items.push_back((now, text));
        while self.items.len() > MAX_SHOWN {
            self.items.pop_front();
        }
    }

    /// The toasts still showing at `now`, oldest first; the expired are forgotten.
    pub fn live(&mut self, now: Instant) -> impl Iterator<Item = &str> {
        self.items
            .retain(|(at, _)| now.saturating_duration_since(*at) < TOAST_FOR);
        self.items.iter().map(|(_, t)| t.as_str())
    }

    /// When the next toast expires (to redraw then).
    pub fn next_expiry(&self, now: Instant) -> Option<Duration> {
        self.items
            .front()
            .map(|(at, _)| (*at + TOAST_FOR).saturating_duration_since(now))
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }
}

impl Model {
    /// A toast, and the chime (rising: someone came) unless the user turned it off.
    pub(super) fn announce(&mut self, text: String, rising: bool) {
        self.toasts.push(Instant::now(), text);
        if self.settings.join_sounds {
            self.send(UiCommand::Chime { rising });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toasts_stack_expire_after_a_few_seconds_and_keep_the_newest_few() {
        let mut t = Toasts::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        t.push(t0, "Bob joined".into());
        t.push(t0 + s, "Carol joined".into());
        assert_eq!(
            t.live(t0 + s).collect::<Vec<_>>(),
            ["Bob joined", "Carol joined"]
        );
        assert_eq!(t.next_expiry(t0 + s), Some(TOAST_FOR - s));
        assert_eq!(t.live(t0 + TOAST_FOR).collect::<Vec<_>>(), ["Carol joined"]);
        for n in 0..6 {
            t.push(t0 + 2 * s, format!("{n}"));
        }
        assert_eq!(
            t.live(t0 + 2 * s).collect::<Vec<_>>(),
            ["2", "3", "4", "5"],
            "the oldest make room"
        );
        assert_eq!(t.live(t0 + 2 * s + TOAST_FOR).count(), 0);
    }
}
