//! What a command prints: text for people, one JSON document with `--json`.

use serde_json::Value;

/// The outcome of a command.
#[derive(Debug, Default)]
pub struct Report {
    /// Printed without `--json`.
    pub text: String,
    /// Printed with `--json`.
    pub json: Value,
}

impl Report {
    /// A report with both renderings.
    pub fn new(text: impl Into<String>, json: Value) -> Self {
        Report {
            text: text.into(),
            json,
        }
    }

    /// Print the report on stdout.
    pub fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&self.json)
                    .expect("a serde_json::Value always serializes")
            );
        } else if !self.text.is_empty() {
            if self.text.ends_with('\n') {
                print!("{}", self.text);
            } else {
                println!("{}", self.text);
            }
        }
    }
}
