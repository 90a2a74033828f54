//! Splits the bandwidth estimate between the video encoders. One encoder feeds every peer
//! (full mesh), so it follows the slowest connection.

/// Video is not cut below this, whatever the estimate says: a picture that is too soft
/// beats none, and GCC recovers from a momentary dip within seconds.
pub(crate) const MIN_VIDEO_BPS: u32 = 80_000;
/// Smaller changes are not worth reconfiguring an encoder for.
const HYSTERESIS: f64 = 0.05;
/// Video is encoded for this share of what the estimate leaves after the audio: the rest
/// is room for retransmissions, packet overhead and the encoder's overshoot, so the send
/// rate stays under the estimate instead of probing past it into the bottleneck's queue.
const HEADROOM: f64 = 0.85;
/// A shared screen is what everyone is looking at: it gets this share of the budget.
const SCREEN_SHARE: f64 = 0.6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VideoRates {
    pub camera: u32,
    pub screen: u32,
}

/// Bitrates for the camera and the screen encoders given every peer's estimate (bit/s),
/// the audio's share and the configured ceiling per encoder.
pub(crate) fn allocate(
    estimates: &[f64],
    audio_bps: u32,
    ceiling_bps: u32,
    sharing: bool,
) -> VideoRates {
    let ceiling = f64::from(ceiling_bps.max(MIN_VIDEO_BPS));
    let budget = estimates
        .iter()
        .copied()
        .filter(|e| e.is_finite() && *e > 0.0)
        .reduce(f64::min)
        .map_or(f64::INFINITY, |e| {
            ((e - f64::from(audio_bps)) * HEADROOM).max(0.0)
        });
    let fit = |bps: f64| bps.clamp(f64::from(MIN_VIDEO_BPS), ceiling) as u32;
    if !sharing {
        return VideoRates {
            camera: fit(budget),
            screen: fit(budget),
        };
    }
    let screen = fit(budget * SCREEN_SHARE);
    VideoRates {
        camera: fit(budget - f64::from(screen)),
        screen,
    }
}

/// Whether moving an encoder from `current` to `new` is a real change.
pub(crate) fn worth_changing(current: u32, new: u32) -> bool {
    let current = f64::from(current.max(1));
    (f64::from(new) - current).abs() / current > HYSTERESIS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_estimate_the_encoders_run_at_the_ceiling() {
        let r = allocate(&[], 32_000, 1_500_000, false);
        assert_eq!(r.camera, 1_500_000);
    }

    #[test]
    fn the_slowest_peer_sets_the_rate_after_the_audio() {
        let r = allocate(
            &[2_000_000.0, 532_000.0, 900_000.0],
            32_000,
            1_500_000,
            false,
        );
        assert_eq!(r.camera, 425_000, "85 % of 532k less the audio");
        let r = allocate(&[5_000_000.0], 32_000, 1_500_000, false);
        assert_eq!(r.camera, 1_500_000, "never above the ceiling");
        let r = allocate(&[40_000.0], 32_000, 1_500_000, false);
        assert_eq!(r.camera, MIN_VIDEO_BPS, "never below the floor");
    }

    #[test]
    fn a_shared_screen_gets_the_larger_part() {
        let r = allocate(&[1_208_000.0], 32_000, 1_500_000, true);
        // 85 % of 1,176k is 999,600: 60 % of it to the screen.
        assert_eq!((r.screen, r.camera), (599_760, 399_840));
        let r = allocate(&[], 32_000, 1_500_000, true);
        assert_eq!((r.screen, r.camera), (1_500_000, 1_500_000));
    }

    #[test]
    fn small_changes_are_ignored() {
        assert!(!worth_changing(1_000_000, 1_040_000));
        assert!(worth_changing(1_000_000, 900_000));
        assert!(worth_changing(0, 100_000));
    }
}
