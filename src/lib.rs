//! confab: native video calls. Signaling (`signaling`), the call engine (`call`),
//! the media path (`media`), headless runs (`headless`) and benchmarks (`bench`).

pub mod bench;
pub mod call;
pub mod doctor;
pub mod echo;
pub mod headless;
pub mod media;
pub mod netem;
pub mod record;
pub mod sfu;
pub mod signaling;
pub mod ui;

mod sync;
