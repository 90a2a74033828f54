//! The impairments `confab bench network` applies, each direction alike, as a link
//! configuration over the call's time.

use std::time::Duration;

use crate::netem::{LinkConfig, Loss};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    Clean,
    Loss2,
    Loss5,
    Loss10,
    /// 50 ms +- 20 ms, reordering.
    Jitter,
    /// 1 Mbit/s behind a 50 ms buffer.
    #[value(name = "1mbit")]
    OneMbit,
    /// 500 kbit/s behind a 50 ms buffer.
    #[value(name = "500kbit")]
    HalfMbit,
    /// Clean, 500 kbit/s from 10 s, clean again from 20 s.
    Step,
    /// Everything lost from 10 s to 13 s.
    Outage3s,
}

impl Profile {
    pub const ALL: [Profile; 9] = [
        Profile::Clean,
        Profile::Loss2,
        Profile::Loss5,
        Profile::Loss10,
        Profile::Jitter,
        Profile::OneMbit,
        Profile::HalfMbit,
        Profile::Step,
        Profile::Outage3s,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Clean => "clean",
            Profile::Loss2 => "loss2",
            Profile::Loss5 => "loss5",
            Profile::Loss10 => "loss10",
            Profile::Jitter => "jitter",
            Profile::OneMbit => "1mbit",
            Profile::HalfMbit => "500kbit",
            Profile::Step => "step",
            Profile::Outage3s => "outage3s",
        }
    }

    /// When the impairment changes (seconds into the call), for profiles that change.
    pub fn changes(self) -> &'static [f64] {
        match self {
            Profile::Step => &[10.0, 20.0],
            Profile::Outage3s => &[10.0, 13.0],
            _ => &[],
        }
    }

    /// The link `elapsed` into the call.
    pub fn at(self, elapsed: Duration) -> LinkConfig {
        let s = elapsed.as_secs_f64();
        let clean = LinkConfig::default();
        let narrow = |bps| LinkConfig {
            rate_bps: bps,
            queue_limit: Duration::from_millis(50),
            ..clean
        };
        let lossy = |p| LinkConfig {
            loss: Loss::Random { probability: p },
            ..clean
        };
        match self {
            Profile::Clean => clean,
            Profile::Loss2 => lossy(0.02),
            Profile::Loss5 => lossy(0.05),
            Profile::Loss10 => lossy(0.10),
            Profile::Jitter => LinkConfig {
                delay: Duration::from_millis(30),
                jitter: Duration::from_millis(40),
                reorder: true,
                ..clean
            },
            Profile::OneMbit => narrow(1_000_000),
            Profile::HalfMbit => narrow(500_000),
            Profile::Step if (10.0..20.0).contains(&s) => narrow(500_000),
            Profile::Step => clean,
            Profile::Outage3s if (10.0..13.0).contains(&s) => lossy(1.0),
            Profile::Outage3s => clean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_narrows_the_link_for_ten_seconds() {
        let at = |s| Profile::Step.at(Duration::from_secs_f64(s)).rate_bps;
        assert_eq!(
            (at(9.9), at(10.0), at(19.9), at(20.0)),
            (0, 500_000, 500_000, 0)
        );
    }

    #[test]
    fn the_outage_loses_everything_for_three_seconds() {
        let at = |s| Profile::Outage3s.at(Duration::from_secs_f64(s)).loss;
        assert_eq!(at(11.0), Loss::Random { probability: 1.0 });
        assert_eq!(at(13.0), Loss::None);
        assert!(Profile::ALL.iter().all(|p| p.changes().len() % 2 == 0));
    }
}
