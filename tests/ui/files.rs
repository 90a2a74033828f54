//! Files as sources: the camera and microphone menus offer a file, a bad path is said
//! beside the field, a good one is previewed, named as a file, and joined with.

use super::*;
use std::path::Path;

/// A one-frame 16x16 y4m clip.
fn write_y4m(path: &Path) {
    let mut bytes = b"YUV4MPEG2 W16 H16 F25:1 C420\nFRAME\n".to_vec();
    bytes.extend(std::iter::repeat_n(128u8, 16 * 16 * 3 / 2));
    std::fs::write(path, bytes).unwrap();
}

fn write_wav(path: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..4800 {
        w.write_sample(((i % 48) * 500) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// The join request sent so far (other commands dropped).
fn join_request(rig: &mut Rig) -> Option<confab::ui::JoinRequest> {
    let mut out = None;
    while let Ok(c) = rig.commands.try_recv() {
        if let UiCommand::Join(j) = c {
            out = Some(j);
        }
    }
    out
}

fn type_into(h: &mut Harness<'static, App>, label: &str, text: &str) {
    h.get_by_label(label).focus();
    h.run();
    h.get_by_label(label).type_text(text);
    h.run();
}

/// The pre-join screen with `menu`'s "... file..." entry chosen: its path field open.
fn file_entry_open(menu: &str, entry: &str) -> (Harness<'static, App>, Rig) {
    let (app, mut rig) = app();
    let mut h = harness(app);
    h.run();
    sent(&mut rig);
    h.get_by_label(menu).click();
    h.run();
    h.get_by_label(entry).click();
    h.run();
    (h, rig)
}

#[test]
fn a_video_file_is_checked_previewed_named_as_a_file_and_joined_with() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("talk.y4m");
    write_y4m(&clip);
    let (mut h, mut rig) = file_entry_open("Camera", "Video file...");
    // No file yet: the camera choice stays and nothing is opened.
    assert_eq!(h.state().model.camera, VideoChoice::None);
    assert!(sent(&mut rig).is_empty());

    let missing = dir.path().join("gone.y4m");
    type_into(&mut h, "Video file (y4m)", &missing.to_string_lossy());
    h.get_by_label("Use video file").click();
    h.run();
    let error = h.get_by_label("No such file").rect();
    assert_beside(&h, error, "Video file (y4m)", []);
    assert!(sent(&mut rig).is_empty(), "a bad path opens nothing");

    h.state_mut().model.files.video.path.clear();
    type_into(&mut h, "Video file (y4m)", &clip.to_string_lossy());
    h.get_by_label("Use video file").click();
    h.run();
    assert_eq!(h.state().model.camera, VideoChoice::File(clip.clone()));
    assert_eq!(sent(&mut rig), [format!("Preview(File({clip:?}))")]);
    assert!(h.query_by_label("No such file").is_none());
    assert!(
        h.query_by_label("Video file (y4m)").is_none(),
        "the field closes"
    );
    // The choice says it is a file, in the menu and on the preview.
    let named = "talk.y4m (video file, not a camera)";
    assert_eq!(h.get_by_label("Camera").value().as_deref(), Some(named));
    h.get_by_label(named);

    h.get_by_label("Join").click();
    h.run_steps(3);
    let join = join_request(&mut rig).expect("a join");
    assert_eq!(join.camera, VideoChoice::File(clip.clone()));
    assert_eq!(
        h.state().model.settings.camera,
        format!("file:{}", clip.display())
    );
}

#[test]
fn an_audio_file_is_checked_and_the_microphone_joins_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.wav");
    std::fs::write(&notes, "not audio").unwrap();
    let clip = dir.path().join("voice.wav");
    write_wav(&clip);
    let (mut h, mut rig) = file_entry_open("Microphone", "Audio file...");
    type_into(&mut h, "Audio file (WAV)", &notes.to_string_lossy());
    h.get_by_label("Use audio file").click();
    h.run();
    h.get_by_label("Not a WAV audio file");
    assert_eq!(h.state().model.microphone, AudioChoice::None);
    assert!(sent(&mut rig).is_empty());

    h.state_mut().model.files.audio.path.clear();
    type_into(&mut h, "Audio file (WAV)", &clip.to_string_lossy());
    h.get_by_label("Use audio file").click();
    h.run();
    assert_eq!(
        sent(&mut rig),
        [format!("PreviewMicrophone(File({clip:?}))")]
    );
    assert_eq!(
        h.get_by_label("Microphone").value().as_deref(),
        Some("voice.wav (audio file, not a microphone)")
    );
    h.get_by_label("Join").click();
    h.run_steps(3);
    let join = join_request(&mut rig).expect("a join");
    assert_eq!(join.microphone, AudioChoice::File(clip));
}

#[test]
fn mid_call_a_video_file_replaces_the_camera() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("talk.y4m");
    write_y4m(&clip);
    let (app, mut rig) = app();
    let mut h = harness(app);
    in_call(&rig);
    h.run();
    h.get_by_label("Devices").click();
    h.run();
    sent(&mut rig);
    h.get_by_label("Camera").click();
    h.run();
    h.get_by_label("Video file...").click();
    h.run();
    type_into(&mut h, "Video file (y4m)", &clip.to_string_lossy());
    h.get_by_label("Use video file").click();
    h.run();
    assert_eq!(sent(&mut rig), [format!("SwitchCamera(File({clip:?}))")]);
}
