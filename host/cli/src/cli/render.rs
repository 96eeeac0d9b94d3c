//! One way out for a command's result. A command builds one value and calls [`show`]:
//! `--json` prints its serde form, otherwise its [`Render::human`] text, every line sanitized
//! for the terminal. The two forms are views of the same value, so they cannot drift apart in
//! what they contain, and no command hand-builds JSON.

use serde::Serialize;
use std::io::{self, Write};

/// A command result a person can read and a program can parse.
pub(crate) trait Render: Serialize {
    /// The text a person reads, one [`say!`] per line.
    fn human(&self, out: &mut Lines<'_>) -> io::Result<()>;
}

/// Standard output for [`Render::human`]: control characters from tickets and plugins are
/// shown as escapes instead of reaching the terminal.
pub(crate) struct Lines<'a>(io::StdoutLock<'a>);

impl Lines<'_> {
    pub(crate) fn line(&mut self, args: std::fmt::Arguments<'_>) -> io::Result<()> {
        writeln!(
            self.0,
            "{}",
            deskhost_engine::sanitize::terminal(&args.to_string())
        )
    }
}

/// Prints `value` as `--json` asked: pretty JSON, or its human text.
pub(crate) fn show<R: Render + ?Sized>(value: &R, json: bool) -> anyhow::Result<()> {
    let mut w = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut w, value)?;
        writeln!(w)?;
    } else {
        value.human(&mut Lines(w))?;
    }
    Ok(())
}
