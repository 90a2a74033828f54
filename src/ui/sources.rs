//! Files as sources: the camera and microphone menus' "Video file..." and "Audio
//! file..." open a path field; a path that names a playable clip becomes the choice
//! (previewed, or swapped in mid-call), anything else is said beside the field.

use std::path::PathBuf;

use super::bridge::UiCommand;
use super::choices::{AudioChoice, VideoChoice, check_audio_file, check_video_file};
use super::model::{Model, Screen};
use super::prejoin::Field;

/// A path being typed for a file source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileEntry {
    /// The path field is shown.
    pub open: bool,
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileEntries {
    pub video: FileEntry,
    pub audio: FileEntry,
}

impl Model {
    /// The camera menu's "Video file..." was picked: the previous choice stays until a
    /// file is given.
    pub fn ask_video_file(&mut self, before: VideoChoice) {
        self.camera = before;
        self.files.video.open = true;
    }

    pub fn ask_audio_file(&mut self, before: AudioChoice) {
        self.microphone = before;
        self.files.audio.open = true;
    }

    /// Uses the typed path as the video source, or says why not beside the field.
    pub fn use_video_file(&mut self) {
        match check_video_file(&self.files.video.path) {
            Ok(path) => {
                self.files.video.open = false;
                let choice = VideoChoice::File(path);
                if self.screen == Screen::Call {
                    self.field_errors.clear(Field::Camera);
                    self.camera = choice.clone();
                    self.send(UiCommand::SwitchCamera(choice));
                    self.save_settings();
                } else {
                    self.preview_camera(choice);
                }
            }
            Err(e) => self.field_errors.set(Field::Camera, e),
        }
    }

    pub fn use_audio_file(&mut self) {
        match check_audio_file(&self.files.audio.path) {
            Ok(path) => {
                self.files.audio.open = false;
                let choice = AudioChoice::File(path);
                if self.screen == Screen::Call {
                    self.field_errors.clear(Field::Microphone);
                    self.microphone = choice.clone();
                    self.send(UiCommand::SwitchMicrophone(choice));
                    self.save_settings();
                } else {
                    self.preview_microphone(choice);
                }
            }
            Err(e) => self.field_errors.set(Field::Microphone, e),
        }
    }
}

/// The menus' entry that asks for a file (an empty path).
pub fn video_file_entry() -> VideoChoice {
    VideoChoice::File(PathBuf::new())
}

pub fn audio_file_entry() -> AudioChoice {
    AudioChoice::File(PathBuf::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::quality::CameraMode;

    #[test]
    fn a_file_choice_is_kept_by_its_path_and_opens_the_clip() {
        let dir = tempfile::tempdir().unwrap();
        let clip = dir.path().join("talk.y4m");
        let mut bytes = b"YUV4MPEG2 W32 H16 F25:1 C420\nFRAME\n".to_vec();
        bytes.extend(std::iter::repeat_n(90u8, 32 * 16 * 3 / 2));
        std::fs::write(&clip, bytes).unwrap();
        let choice = VideoChoice::File(clip.clone());
        assert_eq!(VideoChoice::parse(&choice.key()), Some(choice.clone()));
        let mut src = choice
            .open(CameraMode::default())
            .unwrap()
            .expect("a source");
        // Two reads: the one-frame clip loops instead of ending.
        for _ in 0..2 {
            let f = src.next_frame().unwrap();
            assert_eq!((f.width, f.height, f.y[0]), (32, 16, 90));
        }
        let audio = AudioChoice::File(dir.path().join("a.wav"));
        assert_eq!(AudioChoice::parse(&audio.key()), Some(audio));
    }

    #[test]
    fn only_a_playable_clip_passes_and_each_failure_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let wav = dir.path().join("tone.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&wav, spec).unwrap();
        for i in 0..480 {
            w.write_sample((i % 100) as i16).unwrap();
        }
        w.finalize().unwrap();
        let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
        assert_eq!(check_audio_file(&s(&wav)), Ok(wav.clone()));
        assert_eq!(
            check_audio_file(&s(&text)),
            Err("Not a WAV audio file".into())
        );
        assert_eq!(
            check_video_file(&s(&wav)),
            Err("Not a y4m video (8-bit 4:2:0 YUV4MPEG2)".into())
        );
        assert_eq!(
            check_video_file(&s(&dir.path().join("gone.y4m"))),
            Err("No such file".into())
        );
        assert_eq!(check_video_file(&s(dir.path())), Err("Not a file".into()));
        assert_eq!(check_audio_file("  "), Err("Type the file's path".into()));
    }
}
