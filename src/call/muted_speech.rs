//! "You are muted": whether someone talks into a muted microphone. Pure: the level the
//! microphone heard and the time are passed in.

use std::time::{Duration, Instant};

/// Louder than this is a voice near the microphone; room noise stays under it.
pub const SPEAKING_DBFS: f32 = -40.0;
/// Loud this long is speech (a click or a cough is shorter).
pub const SPEAKING_AFTER: Duration = Duration::from_millis(300);
/// Quiet this long is the end of it (pauses between words are shorter).
pub const QUIET_AFTER: Duration = Duration::from_millis(1500);

#[derive(Debug, Default)]
pub struct MutedSpeech {
    speaking: bool,
    loud_since: Option<Instant>,
    quiet_since: Option<Instant>,
}

impl MutedSpeech {
    /// Takes the loudest level heard since the last call (None: no microphone); returns
    /// the new verdict when it changes. Unmuted is never "speaking while muted".
    pub fn update(&mut self, muted: bool, dbfs: Option<f32>, now: Instant) -> Option<bool> {
        let loud = muted && dbfs.is_some_and(|l| l > SPEAKING_DBFS);
        if !muted || dbfs.is_none() {
            self.loud_since = None;
            self.quiet_since = None;
            return self.set(false);
        }
        if loud {
            self.quiet_since = None;
            let since = *self.loud_since.get_or_insert(now);
            if now.duration_since(since) >= SPEAKING_AFTER {
                return self.set(true);
            }
        } else {
            self.loud_since = None;
            let since = *self.quiet_since.get_or_insert(now);
            if now.duration_since(since) >= QUIET_AFTER {
                return self.set(false);
            }
        }
        None
    }

    fn set(&mut self, speaking: bool) -> Option<bool> {
        (self.speaking != speaking).then(|| {
            self.speaking = speaking;
            speaking
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `levels` one every 100 ms from `t0`; returns each change with its time (ms).
    fn run(d: &mut MutedSpeech, t0: Instant, muted: bool, levels: &[f32]) -> Vec<(u64, bool)> {
        levels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let ms = i as u64 * 100;
                d.update(muted, Some(*l), t0 + Duration::from_millis(ms))
                    .map(|c| (ms, c))
            })
            .collect()
    }

    #[test]
    fn speech_into_a_muted_microphone_is_reported_after_300_ms_and_ends_after_1_5_s_quiet() {
        let mut d = MutedSpeech::default();
        let t0 = Instant::now();
        let mut levels = vec![-20.0; 10];
        levels.extend([-70.0; 20]);
        assert_eq!(
            run(&mut d, t0, true, &levels),
            [(300, true), (2500, false)],
            "loud from 0 ms, quiet from 1000 ms"
        );
    }

    #[test]
    fn a_short_noise_or_a_pause_between_words_changes_nothing() {
        let mut d = MutedSpeech::default();
        let t0 = Instant::now();
        // A 200 ms click.
        assert!(run(&mut d, t0, true, &[-70.0, -10.0, -10.0, -70.0, -70.0]).is_empty());
        // Speech with a 1 s pause in it stays speech.
        let mut levels = vec![-25.0; 5];
        levels.extend([-60.0; 10]);
        levels.extend([-25.0; 5]);
        assert_eq!(run(&mut d, t0, true, &levels), [(300, true)]);
        assert!(d.speaking);
    }

    #[test]
    fn unmuting_or_losing_the_microphone_ends_it_at_once_and_unmuted_speech_is_not_it() {
        let t0 = Instant::now();
        let mut d = MutedSpeech::default();
        assert!(run(&mut d, t0, false, &[-10.0; 10]).is_empty());
        assert_eq!(run(&mut d, t0, true, &[-10.0; 4]), [(300, true)]);
        assert_eq!(d.update(false, Some(-10.0), t0), Some(false));
        assert_eq!(run(&mut d, t0, true, &[-10.0; 4]), [(300, true)]);
        assert_eq!(d.update(true, None, t0), Some(false));
    }
}
