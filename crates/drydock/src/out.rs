//! Standard output for command results.
//!
//! The process keeps Rust's default of ignoring SIGPIPE (a write to a
//! closed socket must be an error a command can explain, not a silent
//! death), so a closed standard output shows up as `BrokenPipe` on write.
//! `outln!` turns that into [`StdoutClosed`], which `main` ends on quietly
//! with status 0: the reader (`| head`, `| grep -q`) stopped reading on
//! purpose, and that is no failure of the command.

use std::io::Write;

/// Standard output was closed by its reader.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// A write error on standard output, with a closed pipe made [`StdoutClosed`].
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("writing to standard output")
    }
}

/// Write `bytes` to standard output and flush.
pub fn write_all(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// One formatted line on standard output.
pub fn line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(stdout_error)
}

/// Flush what is buffered (at exit).
pub fn flush() -> anyhow::Result<()> {
    std::io::stdout().flush().map_err(stdout_error)
}

/// `println!` that returns an error instead of panicking; use with `?`.
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
