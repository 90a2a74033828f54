//! Benchmarks behind `confab bench`: they print figures; tests only check that
//! they run and that what they measure is correct.

mod signaling;

pub use signaling::{SignalingBenchArgs, SignalingBenchReport, run_signaling, signaling};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bad arguments: {0}")]
    Args(String),
    #[error("server: {0}")]
    Server(String),
    #[error(transparent)]
    Io(std::io::Error),
}
