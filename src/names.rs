//! One set of rules for ids (network ids, instance ids, actor ids), and safe
//! display of text that came from elsewhere.
//!
//! Ids travel in handshakes, discovery registrations, configuration files and
//! `--send` targets, and end up in log lines and in names such as
//! `actor@network`. [`check_id`] says whether a string may be an id and, if
//! not, which rule it breaks; [`escaped`] shows any untrusted text in a log
//! line without letting it start a new line, reorder the line or flood it.
//!
//! ```
//! use reflow_distributed::names::{check_id, escaped, IdError};
//!
//! assert_eq!(check_id("alpha-1"), Ok(()));
//! let err = check_id("sink@beta").unwrap_err();
//! assert_eq!(err, IdError::Forbidden { ch: '@', position: 4 });
//! assert_eq!(err.to_string(), "contains '@' at byte 4 ('@' separates actor and network)");
//! assert_eq!(escaped("a\nb").to_string(), "a\\nb");
//! ```

use std::fmt::{self, Write as _};

/// Longest id, in bytes (UTF-8).
pub const MAX_ID_BYTES: usize = 256;

/// The id rule in one line, worded to follow "must be" in an error message.
pub const ID_RULE: &str = "an id of 1 to 256 bytes without whitespace, control or invisible format \
                           characters, `@`, `:` or `/`";

/// How many characters of a text [`escaped`] shows before it cuts the rest.
pub const ESCAPED_MAX_CHARS: usize = 128;

/// Which id rule a string breaks. `position` is the byte offset of `ch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_ID_BYTES`]; `len` is its length in bytes.
    TooLong {
        /// Length of the id in bytes.
        len: usize,
    },
    /// A control character (Unicode category Cc), such as a newline: it could
    /// forge a log line.
    Control {
        /// The character.
        ch: char,
        /// Its byte offset in the id.
        position: usize,
    },
    /// An invisible format character (Unicode category Cf), such as a bidi
    /// control (U+202E), a zero-width space or the BOM: it could make two ids
    /// look alike or make a log line read differently from what it holds.
    Format {
        /// The character.
        ch: char,
        /// Its byte offset in the id.
        position: usize,
    },
    /// Whitespace (Unicode White_Space), which splits command lines and logs.
    Whitespace {
        /// The character.
        ch: char,
        /// Its byte offset in the id.
        position: usize,
    },
    /// One of the separators `@`, `:` and `/`, which would make a name built
    /// from ids ambiguous.
    Forbidden {
        /// The character: `@`, `:` or `/`.
        ch: char,
        /// Its byte offset in the id.
        position: usize,
    },
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never write `ch` itself unless it is a visible separator: the text
        // ends up in logs and HTTP answers.
        let code = |ch: char| format!("U+{:04X}", u32::from(ch));
        match *self {
            IdError::Empty => f.write_str("is empty"),
            IdError::TooLong { len } => write!(f, "is {len} bytes long; the limit is {MAX_ID_BYTES}"),
            IdError::Control { ch, position } => {
                write!(
                    f,
                    "contains a control character ({}) at byte {position}",
                    code(ch)
                )
            }
            IdError::Format { ch, position } => write!(
                f,
                "contains an invisible format character ({}) at byte {position}; it can hide or reorder text",
                code(ch)
            ),
            IdError::Whitespace { ch, position } => {
                write!(f, "contains whitespace ({}) at byte {position}", code(ch))
            }
            IdError::Forbidden { ch, position } => {
                let why = match ch {
                    '@' => "'@' separates actor and network",
                    ':' => "':' separates the parts of a --send target",
                    _ => "'/' separates network and actor in logged targets",
                };
                write!(f, "contains '{ch}' at byte {position} ({why})")
            }
        }
    }
}

impl std::error::Error for IdError {}

/// Checks `id` against the id rule ([`ID_RULE`]) and names the first rule it
/// breaks. The length is checked first, so a huge input is refused without
/// being scanned.
///
/// # Errors
///
/// The [`IdError`] of the first rule `id` breaks.
pub fn check_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong { len: id.len() });
    }
    for (position, ch) in id.char_indices() {
        // Control first: tab and newline are also whitespace, and "control
        // character" is the more telling name for them.
        if ch.is_control() {
            return Err(IdError::Control { ch, position });
        }
        if is_format(ch) {
            return Err(IdError::Format { ch, position });
        }
        if ch.is_whitespace() {
            return Err(IdError::Whitespace { ch, position });
        }
        if matches!(ch, '@' | ':' | '/') {
            return Err(IdError::Forbidden { ch, position });
        }
    }
    Ok(())
}

/// True for the invisible format characters of Unicode category Cf (Unicode
/// 15.1): bidi controls and marks, zero-width characters, the BOM, invisible
/// operators, tag characters and the rest. Listed here because std has no
/// category table.
pub(crate) fn is_format(ch: char) -> bool {
    matches!(
        u32::from(ch),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// Untrusted text made safe for one log line; see [`escaped`].
#[derive(Clone, Copy)]
pub struct Escaped<'a> {
    text: &'a str,
    max_chars: usize,
}

/// Wraps `text` (an id, a reason, anything a peer or a user sent) for
/// display in a log line or an error message:
///
/// - `\n`, `\r`, `\t`, `"` and `\` are written as `\n`, `\r`, `\t`, `\"` and
///   `\\`;
/// - control and invisible format characters (bidi controls, zero-width
///   characters, the BOM), whitespace other than the space, combining marks
///   and anything else that does not print are written as `\u{202e}`;
/// - only the first [`ESCAPED_MAX_CHARS`] characters are shown, followed by
///   `…(N bytes)` giving the whole text's length.
///
/// `Display` writes the escaped text as it is; `Debug` puts it in double
/// quotes. The text is not copied.
///
/// ```
/// use reflow_distributed::names::escaped;
///
/// let hostile = "beta\n2026-01-01T00:00:00Z INFO admin logged in";
/// assert_eq!(
///     format!("hello from {:?}", escaped(hostile)),
///     r#"hello from "beta\n2026-01-01T00:00:00Z INFO admin logged in""#
/// );
/// assert_eq!(escaped(&"x".repeat(300)).max_chars(3).to_string(), "xxx…(300 bytes)");
/// ```
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped {
        text,
        max_chars: ESCAPED_MAX_CHARS,
    }
}

impl Escaped<'_> {
    /// Shows at most `max_chars` characters instead of [`ESCAPED_MAX_CHARS`].
    pub fn max_chars(self, max_chars: usize) -> Self {
        Escaped { max_chars, ..self }
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.text.chars();
        for ch in chars.by_ref().take(self.max_chars) {
            match ch {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                ch if needs_escape(ch) => write!(f, "\\u{{{:x}}}", u32::from(ch))?,
                ch => f.write_char(ch)?,
            }
        }
        if chars.next().is_some() {
            write!(f, "…({} bytes)", self.text.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Characters [`Escaped`] writes as `\u{..}`. std's `escape_debug` knows
/// which characters do not print (unassigned, private use, separators) and
/// escapes combining marks, which can pile up over neighbouring lines; a
/// single quote is the one character it escapes that is harmless here.
fn needs_escape(ch: char) -> bool {
    ch.is_control()
        || is_format(ch)
        || (ch.is_whitespace() && ch != ' ')
        || (ch != '\'' && ch.escape_debug().len() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_states_the_limit() {
        assert!(ID_RULE.contains(&format!(" {MAX_ID_BYTES} bytes")));
    }

    #[test]
    fn ordinary_ids_pass() {
        for ok in [
            "alpha",
            "alpha-1",
            "beta_2.local",
            "grüße",
            "日本",
            "a",
            "x+y=z",
            "it's",
        ] {
            assert_eq!(check_id(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_id(&"a".repeat(MAX_ID_BYTES)), Ok(()));
    }

    #[test]
    fn empty_and_too_long_ids_are_refused() {
        assert_eq!(check_id(""), Err(IdError::Empty));
        assert_eq!(
            check_id(&"a".repeat(MAX_ID_BYTES + 1)),
            Err(IdError::TooLong {
                len: MAX_ID_BYTES + 1
            })
        );
        // Bytes, not characters: 129 two-byte characters are 258 bytes.
        assert_eq!(check_id(&"ü".repeat(129)), Err(IdError::TooLong { len: 258 }));
        let flood = "a".repeat(100 * 1024);
        assert_eq!(check_id(&flood), Err(IdError::TooLong { len: 102_400 }));
    }

    #[test]
    fn separators_are_refused_with_their_position() {
        for (id, ch, position) in [
            ("a@b", '@', 1),
            ("net:actor", ':', 3),
            ("x/y", '/', 1),
            ("@", '@', 0),
        ] {
            assert_eq!(check_id(id), Err(IdError::Forbidden { ch, position }), "{id:?}");
        }
        assert_eq!(
            check_id("ünï@b").unwrap_err().to_string(),
            "contains '@' at byte 5 ('@' separates actor and network)"
        );
    }

    #[test]
    fn control_characters_are_refused() {
        for ch in ['\0', '\n', '\r', '\t', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}'] {
            let id = format!("ab{ch}c");
            assert_eq!(check_id(&id), Err(IdError::Control { ch, position: 2 }), "{id:?}");
        }
        let forged = "beta\n2026-01-01T00:00:00Z INFO fake line";
        let err = check_id(forged).unwrap_err();
        assert_eq!(
            err,
            IdError::Control {
                ch: '\n',
                position: 4
            }
        );
        assert_eq!(err.to_string(), "contains a control character (U+000A) at byte 4");
    }

    #[test]
    fn format_characters_are_refused() {
        let bidi = [
            '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
        ];
        let isolates = ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'];
        let zero_width = [
            '\u{200b}', '\u{200c}', '\u{200d}', '\u{feff}', '\u{2060}', '\u{ad}',
        ];
        let tags = ['\u{e0001}', '\u{e0041}', '\u{e007f}', '\u{61c}'];
        for ch in bidi.into_iter().chain(isolates).chain(zero_width).chain(tags) {
            let id = format!("x{ch}");
            assert_eq!(check_id(&id), Err(IdError::Format { ch, position: 1 }), "{id:?}");
            let text = check_id(&id).unwrap_err().to_string();
            assert!(!text.contains(ch), "{text:?} echoes the character");
        }
        assert_eq!(
            check_id("ab\u{202e}c").unwrap_err().to_string(),
            "contains an invisible format character (U+202E) at byte 2; it can hide or reorder text"
        );
    }

    #[test]
    fn whitespace_is_refused() {
        for ch in [
            ' ', '\u{a0}', '\u{2003}', '\u{2028}', '\u{2029}', '\u{3000}', '\u{1680}',
        ] {
            let id = format!("a{ch}b");
            assert_eq!(
                check_id(&id),
                Err(IdError::Whitespace { ch, position: 1 }),
                "{id:?}"
            );
        }
        assert_eq!(
            check_id("al pha").unwrap_err().to_string(),
            "contains whitespace (U+0020) at byte 2"
        );
    }

    #[test]
    fn the_first_broken_rule_is_named() {
        assert_eq!(
            check_id("a@b c"),
            Err(IdError::Forbidden { ch: '@', position: 1 })
        );
        assert_eq!(
            check_id("a b@c"),
            Err(IdError::Whitespace { ch: ' ', position: 1 })
        );
    }

    #[test]
    fn escaping_keeps_a_forged_log_line_on_one_line() {
        let forged = "beta\r\n2026-01-01T00:00:00Z INFO reflow: admin logged in";
        let shown = escaped(forged).to_string();
        assert_eq!(
            shown,
            "beta\\r\\n2026-01-01T00:00:00Z INFO reflow: admin logged in"
        );
        assert!(!shown.contains(['\n', '\r']));
        assert_eq!(escaped("tab\there").to_string(), "tab\\there");
        assert_eq!(escaped("\u{1b}[31mred").to_string(), "\\u{1b}[31mred");
        assert_eq!(escaped("nul\0").to_string(), "nul\\u{0}");
        assert_eq!(escaped("nel\u{85}").to_string(), "nel\\u{85}");
    }

    #[test]
    fn escaping_shows_bidi_and_invisible_characters() {
        assert_eq!(escaped("user\u{202e}gnp.exe").to_string(), "user\\u{202e}gnp.exe");
        assert_eq!(escaped("a\u{2066}b\u{2069}").to_string(), "a\\u{2066}b\\u{2069}");
        assert_eq!(
            escaped("zero\u{200b}width\u{feff}").to_string(),
            "zero\\u{200b}width\\u{feff}"
        );
        assert_eq!(escaped("line\u{2028}sep").to_string(), "line\\u{2028}sep");
        assert_eq!(escaped("nb\u{a0}sp").to_string(), "nb\\u{a0}sp");
        assert_eq!(escaped("private\u{e000}").to_string(), "private\\u{e000}");
        assert_eq!(escaped("e\u{301}").to_string(), "e\\u{301}");
    }

    #[test]
    fn escaping_keeps_printable_text() {
        let text = "grüße, 日本 ✓ it's a space-separated line: 1 + 1 = 2";
        assert_eq!(escaped(text).to_string(), text);
        assert_eq!(escaped("").to_string(), "");
    }

    #[test]
    fn escaping_escapes_quotes_and_backslashes() {
        assert_eq!(escaped(r#"say "hi"\"#).to_string(), r#"say \"hi\"\\"#);
        assert_eq!(format!("{:?}", escaped(r#"a"b"#)), r#""a\"b""#);
    }

    #[test]
    fn escaping_bounds_a_flood() {
        let flood = "A".repeat(100 * 1024);
        let shown = escaped(&flood).to_string();
        assert_eq!(shown, format!("{}…(102400 bytes)", "A".repeat(ESCAPED_MAX_CHARS)));
        // Escapes may lengthen each shown character, never the count shown.
        let controls = "\u{1}".repeat(100 * 1024);
        let shown = escaped(&controls).to_string();
        assert!(shown.len() < ESCAPED_MAX_CHARS * 8 + 32, "{} bytes", shown.len());
        assert!(shown.ends_with("…(102400 bytes)"), "{shown}");
    }

    #[test]
    fn escaping_cuts_on_characters_not_bytes() {
        let exact = "ü".repeat(ESCAPED_MAX_CHARS);
        assert_eq!(escaped(&exact).to_string(), exact);
        let over = "ü".repeat(ESCAPED_MAX_CHARS + 1);
        assert_eq!(
            escaped(&over).to_string(),
            format!("{exact}…({} bytes)", over.len())
        );
        assert_eq!(escaped("abcdef").max_chars(0).to_string(), "…(6 bytes)");
    }
}
