//! `ConfigError`: what is wrong with a peer configuration file, and where.
//!
//! Every error names the file; errors about a key name the key and, when the
//! key is in the file, its line. No error ever carries the auth token.

use std::fmt;

use crate::names::escaped;

/// A peer configuration that could not be read or is not valid.
///
/// `Display` reads `FILE:LINE: message` (or `FILE: message` when there is no
/// line, as for a missing key or an unreadable file).
#[derive(Debug)]
pub struct ConfigError {
    source_name: String,
    line: Option<usize>,
    kind: ConfigErrorKind,
}

/// What went wrong. Keys are written as they would be looked for in the file:
/// `bind_port`, `[reconnect] max_delay_ms`, `[[connect]] endpoint`.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read (missing, unreadable, not UTF-8).
    Io(std::io::Error),
    /// The text is not valid TOML. The message is the TOML parser's, without
    /// the quoted source line (which could hold a secret).
    Syntax(String),
    /// A key that is not part of the format, most often a typo.
    UnknownKey {
        /// The key as written (escaped when shown).
        key: String,
        /// The closest known key, when one is close enough to be a likely typo
        /// (at most a third of its length in edits).
        suggestion: Option<&'static str>,
        /// Every key known in that table.
        expected: &'static [&'static str],
    },
    /// A required key is absent.
    MissingKey {
        /// The key that must be there.
        key: String,
    },
    /// A key has a value of the wrong type or out of range.
    InvalidValue {
        /// The key whose value is wrong.
        key: String,
        /// What the value must be, e.g. `an integer 0..=65535`.
        expected: String,
        /// The value found, e.g. `"abc"` or `a table`; never the auth token.
        got: String,
    },
    /// Two entries that must be distinct are the same.
    Duplicate {
        /// Which entries (`[[connect]] endpoint`, `[[remote_actor]]`).
        key: String,
        /// The value found twice.
        value: String,
    },
    /// An environment variable that is set but unusable.
    Env {
        /// The variable, e.g. `REFLOW_AUTH_TOKEN`.
        var: &'static str,
        /// What is wrong with it, e.g. `is not valid UTF-8`.
        problem: &'static str,
    },
}

impl ConfigError {
    pub(crate) fn new(source_name: &str, line: Option<usize>, kind: ConfigErrorKind) -> Self {
        ConfigError {
            source_name: source_name.to_string(),
            line,
            kind,
        }
    }

    /// The file name (or the name given to `from_str_named`).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// 1-based line of the offending key or value, when it is in the file.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// What went wrong.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: ", self.source_name, line)?,
            None => write!(f, "{}: ", self.source_name)?,
        }
        match &self.kind {
            ConfigErrorKind::Io(err) => write!(f, "cannot read the file: {err}"),
            ConfigErrorKind::Syntax(message) => write!(f, "invalid TOML: {message}"),
            ConfigErrorKind::UnknownKey {
                key,
                suggestion,
                expected,
            } => {
                // A quoted TOML key may hold anything, newlines included.
                write!(f, "unknown key `{}`", escaped(key))?;
                if let Some(suggestion) = suggestion {
                    write!(f, ", did you mean `{suggestion}`?")?;
                }
                write!(f, " (expected one of: {})", expected.join(", "))
            }
            ConfigErrorKind::MissingKey { key } => write!(f, "missing required key `{key}`"),
            ConfigErrorKind::InvalidValue { key, expected, got } => {
                write!(f, "`{key}` must be {expected}, got {got}")
            }
            ConfigErrorKind::Duplicate { key, value } => write!(f, "duplicate `{key}` {value}"),
            ConfigErrorKind::Env { var, problem } => write!(f, "environment variable {var} {problem}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ConfigErrorKind::Io(err) => Some(err),
            _ => None,
        }
    }
}

/// 1-based line number of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count()
}

/// The known key closest to `unknown`, if it is close enough to be a typo:
/// at most a third of the key's length in edits (and at least one).
pub(crate) fn closest_key(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
    let limit = (unknown.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        let text = "a = 1\nb = 2\n\nc = 3";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 6), 2);
        assert_eq!(line_of(text, text.len()), 4);
        assert_eq!(line_of(text, text.len() + 10), 4);
    }

    #[test]
    fn typos_find_the_intended_key() {
        let known = ["heartbeat_interval_ms", "max_connections", "bind_port"];
        assert_eq!(
            closest_key("heartbeat_intervl_ms", &known),
            Some("heartbeat_interval_ms")
        );
        assert_eq!(closest_key("bind_prot", &known), Some("bind_port"));
        assert_eq!(closest_key("colour", &known), None);
    }

    #[test]
    fn display_names_file_line_and_key() {
        let err = ConfigError::new(
            "alpha.toml",
            Some(3),
            ConfigErrorKind::InvalidValue {
                key: "bind_port".into(),
                expected: "an integer 0..=65535".into(),
                got: "\"abc\"".into(),
            },
        );
        assert_eq!(
            err.to_string(),
            "alpha.toml:3: `bind_port` must be an integer 0..=65535, got \"abc\""
        );
        let err = ConfigError::new(
            "alpha.toml",
            None,
            ConfigErrorKind::MissingKey {
                key: "network_id".into(),
            },
        );
        assert_eq!(err.to_string(), "alpha.toml: missing required key `network_id`");
    }
}
