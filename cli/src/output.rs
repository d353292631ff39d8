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

/// Decimal text `value` rounded half away from zero to at most `digits` fractional digits
/// (trailing zeros after the point dropped). Text that is not a plain decimal (`withheld
/// (...)`, `n/d`) is returned unchanged.
pub fn rounded_decimal(value: &str, digits: usize) -> String {
    let (neg, body) = match value.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, value),
    };
    let Some((int, frac)) = body.split_once('.') else {
        return value.to_string();
    };
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !plain(int) || !plain(frac) || frac.len() <= digits {
        return value.to_string();
    }
    // Digits of int.frac[..digits], plus one unit in the last place if the next digit is 5+.
    let mut d: Vec<u8> = int.bytes().chain(frac.bytes().take(digits)).collect();
    if frac.as_bytes()[digits] >= b'5' {
        let mut i = d.len();
        loop {
            if i == 0 {
                d.insert(0, b'1');
                break;
            }
            i -= 1;
            if d[i] == b'9' {
                d[i] = b'0';
            } else {
                d[i] += 1;
                break;
            }
        }
    }
    let split = d.len() - digits;
    let int: String = String::from_utf8_lossy(&d[..split]).into_owned();
    let frac = String::from_utf8_lossy(&d[split..]);
    let frac = frac.trim_end_matches('0');
    let zero = int.bytes().all(|b| b == b'0') && frac.is_empty();
    let sign = if neg && !zero { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// An error and its causes on one line, joined with `: ` as `anyhow`'s alternate display
/// does, except that a cause whose text its parent already shows is not repeated (the wallet's
/// errors name their cause in their own text and also return it as their source). A message
/// spanning lines (electrum-client lists every attempt) is folded.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts
            .last()
            .is_some_and(|parent| parent.contains(text.trim()))
        {
            continue;
        }
        parts.push(text);
    }
    parts
        .join(": ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::{one_line, rounded_decimal};

    #[test]
    fn one_line_errors_name_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = btcmpc_wallet::WalletError::from(btcmpc_wallet::StorageError::Io {
            path: "/tmp/x".into(),
            source: io,
        });
        let e = anyhow::Error::from(e).context("opening the wallet");
        assert_eq!(one_line(&e), "opening the wallet: /tmp/x: no such file");
        let e = anyhow::anyhow!("line one\n  line two").context("outer");
        assert_eq!(one_line(&e), "outer: line one line two");
    }

    #[test]
    fn decimals_round_half_away_from_zero_and_other_text_is_kept() {
        for (v, want) in [
            ("1.234564", "1.23456"),
            ("1.234565", "1.23457"),
            ("-1.234565", "-1.23457"),
            ("9.999995", "10"),
            ("-0.000004", "0"),
            ("0.1", "0.1"),
            ("12", "12"),
            ("2.50000000", "2.5"),
            (
                "withheld (fewer than 10 rows)",
                "withheld (fewer than 10 rows)",
            ),
            ("1/3", "1/3"),
        ] {
            assert_eq!(rounded_decimal(v, 5), want, "{v}");
        }
    }
}
