//! The CLI's own output on stdout. Its reader may close the pipe early
//! (`simulate | head`): that ends the output and is not an error, where
//! `println!` would panic with a backtrace.

use std::fmt;
use std::io::{self, Write};

/// Why writing to stdout failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader closed its end of the pipe.
    #[error("stdout was closed by its reader")]
    Closed,
    #[error("writing to stdout: {0}")]
    Io(io::Error),
}

/// Writes formatted text to stdout, with a newline after it when `newline`.
pub fn write(args: fmt::Arguments<'_>, newline: bool) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(if newline { b"\n" } else { b"" }))
        .and_then(|()| out.flush());
    written.map_err(|e| match e.kind() {
        io::ErrorKind::BrokenPipe => OutputError::Closed,
        _ => OutputError::Io(e),
    })
}

/// True when `error` is stdout's reader having gone: the command's output
/// ends there, and it exits as if it had finished.
pub fn is_closed(error: &anyhow::Error) -> bool {
    matches!(error.downcast_ref(), Some(OutputError::Closed))
}

/// `print!` that returns stdout's error instead of panicking on it.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::write(format_args!($($arg)*), false) };
}

/// `println!` that returns stdout's error instead of panicking on it.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::output::write(format_args!($($arg)*), true) };
}

pub(crate) use {out, outln};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_reader_is_told_apart_from_other_errors() {
        assert!(is_closed(&anyhow::Error::from(OutputError::Closed)));
        let other = OutputError::Io(io::Error::other("disk full"));
        assert!(!is_closed(&anyhow::Error::from(other)));
    }
}
