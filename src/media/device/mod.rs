//! Real capture and playback devices: cameras (nokhwa), microphones and speakers
//! (cpal), screens (scrap), echo cancellation and noise suppression
//! (webrtc-audio-processing). Device threads own the backend handles, which are not
//! all `Send`; the public types only hold channels and shared buffers.

mod aec;
mod audio;
mod camera;
mod mic;
mod resample;
mod screen;
mod speaker;

pub use aec::AudioProcessor;
pub use audio::{AudioDeviceInfo, list_microphones, list_speakers};
pub use camera::{CameraInfo, CameraSource, list_cameras};
pub use mic::MicrophoneSource;
pub use resample::StreamResampler;
pub use screen::{ScreenInfo, ScreenSource, list_screens};
pub use speaker::Speaker;
