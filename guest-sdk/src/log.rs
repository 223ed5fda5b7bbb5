//! Writing to the host's log. Inside Wasm this is the contract's `log`
//! import; natively (in a policy's unit tests) it goes to stderr.

#[cfg(target_arch = "wasm32")]
use crate::__bindings::predictor::wasm_autoscaler::policy::log as host;

/// Severity of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes one message to the host log at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Writes a debug message to the host log.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes an info message to the host log.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes a warning to the host log.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}
