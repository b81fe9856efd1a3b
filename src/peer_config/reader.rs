//! Typed, position-aware access to a parsed TOML table.
//!
//! The document is parsed into toml's spanned tree (`DeTable`), so every key
//! and value carries its byte range. A [`Reader`] looks keys up, checks their
//! types and ranges, and records every problem with its line instead of
//! stopping at the first; the caller then reports the earliest one in the file.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ConfigErrorKind, closest_key, line_of};

/// Keys whose values must never appear in an error.
const SECRET_KEYS: &[&str] = &["auth_token"];

/// One table of the document: its keys, where it is, and how its keys are
/// named in messages (`""`, `"[reconnect] "`, `"[[connect]] "`).
pub(crate) struct Section<'t, 'i> {
    pub(crate) table: &'t DeTable<'i>,
    pub(crate) span: Range<usize>,
    pub(crate) label: &'static str,
    pub(crate) known: &'static [&'static str],
}

/// Collects errors while values are read from one document.
pub(crate) struct Reader<'a> {
    name: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(name: &'a str, text: &'a str) -> Self {
        Reader {
            name,
            text,
            errors: Vec::new(),
        }
    }

    /// Parses the document; a syntax error is returned at once with its line.
    pub(crate) fn parse(name: &str, text: &'a str) -> Result<Spanned<DeTable<'a>>, ConfigError> {
        DeTable::parse(text).map_err(|err| {
            let line = err.span().map(|span| line_of(text, span.start));
            ConfigError::new(
                name,
                line,
                ConfigErrorKind::Syntax(err.message().trim_end().to_string()),
            )
        })
    }

    /// The earliest recorded error in file order (errors without a line last).
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        match self
            .errors
            .into_iter()
            .min_by_key(|e| e.line().unwrap_or(usize::MAX))
        {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    pub(crate) fn report(&mut self, span: Option<&Range<usize>>, kind: ConfigErrorKind) {
        let line = span.map(|s| line_of(self.text, s.start));
        self.errors.push(ConfigError::new(self.name, line, kind));
    }

    /// Records that `value` of `key` is not `expected`, quoting the value
    /// unless the key is secret.
    pub(crate) fn invalid(&mut self, key: String, value: &Spanned<DeValue<'_>>, expected: &str) {
        let got = describe(value.get_ref(), SECRET_KEYS.iter().any(|s| key.ends_with(s)));
        self.invalid_value(key, value, expected, got);
    }

    /// As [`Reader::invalid`], adding which part of the rule the value breaks:
    /// `got "a@b", which contains '@' at byte 1 (…)`.
    pub(crate) fn invalid_because(
        &mut self,
        key: String,
        value: &Spanned<DeValue<'_>>,
        expected: &str,
        why: &dyn std::fmt::Display,
    ) {
        let got = describe(value.get_ref(), SECRET_KEYS.iter().any(|s| key.ends_with(s)));
        self.invalid_value(key, value, expected, format!("{got}, which {why}"));
    }

    fn invalid_value(&mut self, key: String, value: &Spanned<DeValue<'_>>, expected: &str, got: String) {
        let kind = ConfigErrorKind::InvalidValue {
            key,
            expected: expected.to_string(),
            got,
        };
        self.report(Some(&value.span()), kind);
    }

    /// Records every key of `section` that is not one of its known keys;
    /// true when there was none.
    pub(crate) fn check_keys(&mut self, section: &Section<'_, '_>) -> bool {
        let mut all_known = true;
        for key in section.table.keys() {
            let name: &str = key.get_ref();
            if !section.known.contains(&name) {
                let kind = ConfigErrorKind::UnknownKey {
                    key: format!("{}{}", section.label, name),
                    suggestion: closest_key(name, section.known),
                    expected: section.known,
                };
                self.report(Some(&key.span()), kind);
                all_known = false;
            }
        }
        all_known
    }

    /// Records a missing required key, at the line of its table when the
    /// table is written in the file.
    pub(crate) fn missing(&mut self, section: &Section<'_, '_>, key: &str) {
        let span = (!section.label.is_empty()).then_some(&section.span);
        self.report(
            span,
            ConfigErrorKind::MissingKey {
                key: format!("{}{}", section.label, key),
            },
        );
    }

    /// A string value; other types are recorded as errors.
    pub(crate) fn string<'t, 'i>(
        &mut self,
        section: &Section<'t, 'i>,
        key: &str,
    ) -> Option<(&'t str, &'t Spanned<DeValue<'i>>)> {
        let value = section.table.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some((s.as_ref(), value)),
            _ => {
                self.invalid(format!("{}{}", section.label, key), value, "a string");
                None
            }
        }
    }

    /// A string checked by `check`, which returns the value to keep.
    pub(crate) fn checked_string<T>(
        &mut self,
        section: &Section<'_, '_>,
        key: &str,
        expected: &str,
        check: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let (text, value) = self.string(section, key)?;
        let checked = check(text);
        if checked.is_none() {
            self.invalid(format!("{}{}", section.label, key), value, expected);
        }
        checked
    }

    /// An integer in `min..=max`.
    pub(crate) fn integer(
        &mut self,
        section: &Section<'_, '_>,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let value = section.table.get(key)?;
        let number = match value.get_ref() {
            DeValue::Integer(int) => u64::from_str_radix(int.as_str(), int.radix()).ok(),
            _ => None,
        };
        match number {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.invalid(
                    format!("{}{}", section.label, key),
                    value,
                    &integer_rule(min, max),
                );
                None
            }
        }
    }

    /// A boolean.
    pub(crate) fn boolean(&mut self, section: &Section<'_, '_>, key: &str) -> Option<bool> {
        let value = section.table.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.invalid(format!("{}{}", section.label, key), value, "true or false");
                None
            }
        }
    }
}

/// How an integer range is described in messages.
fn integer_rule(min: u64, max: u64) -> String {
    match (min, max) {
        (0, u64::MAX) => "a non-negative integer".to_string(),
        (1, u64::MAX) => "a positive integer".to_string(),
        (min, u64::MAX) => format!("an integer >= {min}"),
        (min, max) => format!("an integer {min}..={max}"),
    }
}

/// A value as quoted in an error: strings in quotes, numbers as written,
/// arrays and tables by kind. A secret is described by its type only.
fn describe(value: &DeValue<'_>, secret: bool) -> String {
    match value {
        DeValue::String(_) if secret => "a string".to_string(),
        DeValue::String(s) => quote(s),
        _ if secret => format!("{} {}", article(value.type_str()), value.type_str()),
        DeValue::Integer(int) => int.to_string(),
        DeValue::Float(float) => float.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(dt) => dt.to_string(),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// A string in quotes, shortened to its first 60 characters.
fn quote(s: &str) -> String {
    const LIMIT: usize = 60;
    match s.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

fn article(noun: &str) -> &'static str {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}
