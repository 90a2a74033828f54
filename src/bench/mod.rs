//! Benchmarks behind `confab bench`: they print figures; tests only check that
//! they run and that what they measure is correct.

mod call;
mod network;
mod profile;
mod room;
mod shaper;
mod signaling;
mod simulcast;

pub use call::{CallBenchArgs, CallBenchReport, CallShape, call, run_call};
pub use network::{Direction, NetworkBenchArgs, network, run_profile};
pub use profile::Profile;
pub use room::{Mode, RoomRow, compare, run_room};
pub use shaper::{Shaper, ShaperStats};
pub use signaling::{SignalingBenchArgs, SignalingBenchReport, run_signaling, signaling};
pub use simulcast::{
    SimulcastBenchArgs, SimulcastBenchReport, SwitchTimes, run_simulcast, simulcast,
};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bad arguments: {0}")]
    Args(String),
    #[error("server: {0}")]
    Server(String),
    #[error(transparent)]
    Io(std::io::Error),
}

/// The `confab` executable: this one, or (from a test binary in target/*/deps)
/// the one cargo built beside it.
fn confab_binary() -> Result<std::path::PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::Io)?;
    if exe.file_stem().is_some_and(|s| s == "confab") {
        return Ok(exe);
    }
    exe.ancestors()
        .skip(1)
        .map(|d| d.join("confab"))
        .find(|c| c.is_file())
        .ok_or_else(|| BenchError::Server("cannot find the confab executable".into()))
}
