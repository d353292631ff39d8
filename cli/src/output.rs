//! What a command prints: text for people, one JSON document with `--json`.

use serde_json::Value;

/// The outcome of a command.
#[derive(Debug, Default)]
pub struct Report {
    /// Printed without `--json`.
    pub text: String,
    /// Printed with `--json`.
    pub json: Value,
    /// The process's exit code (0 unless [`Report::with_exit`] said otherwise).
    pub exit: u8,
}

impl Report {
    /// A report with both renderings.
    pub fn new(text: impl Into<String>, json: Value) -> Self {
        Report {
            text: text.into(),
            json,
            exit: 0,
        }
    }

    /// The same report, exiting with `code` (a negative answer that is not an error, such as
    /// a refused access).
    pub fn with_exit(mut self, code: u8) -> Self {
        self.exit = code;
        self
    }

    /// Print the report on stdout. A closed stdout (`| head`) ends the output quietly.
    pub fn print(&self, json: bool) {
        use std::io::Write;
        let mut text = if json {
            serde_json::to_string_pretty(&self.json).expect("a serde_json::Value always serializes")
        } else {
            self.text.clone()
        };
        if text.is_empty() {
            return;
        }
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
}
