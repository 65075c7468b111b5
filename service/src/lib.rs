//! What every long-running binary of the workspace does the same way around its own work: logs
//! to stderr, stops on Ctrl-C or SIGTERM, and reads durations given in seconds. The gateway and
//! the gpu-worker call it from `main` and their config; it knows nothing of HTTP, NATS or
//! metrics.
//!
//! # Layout
//! - [`logging`]: `tracing` to stderr, filtered by `RUST_LOG`, as text or JSON lines.
//! - [`shutdown`]: the signal that starts a graceful shutdown.
//! - [`flags`]: parsers for clap flags both binaries take.

pub mod flags;
pub mod logging;
pub mod shutdown;

pub use flags::parse_seconds;
pub use logging::init_logging;
pub use shutdown::shutdown_signal;
