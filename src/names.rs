//! TEMP stub of the id rules, until the `names` branch lands (take its
//! version on merge). Kept to what the bridge needs: a refusal that names
//! the rule, invisible format characters (bidi controls) refused, and
//! untrusted text escaped and cut short before it reaches a log line.
use std::fmt;

/// Longest id, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Characters of untrusted text shown before the rest is cut.
const ESCAPED_MAX_CHARS: usize = 128;

/// Which rule `id` breaks, worded to follow "… is not valid: ".
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is empty".into());
    }
    // Length first: a huge id is refused without being scanned.
    if id.len() > MAX_ID_BYTES {
        return Err(format!("is {} bytes long; the limit is {MAX_ID_BYTES}", id.len()));
    }
    for (at, ch) in id.char_indices() {
        let code = format!("U+{:04X}", u32::from(ch));
        if ch.is_control() {
            return Err(format!("contains a control character ({code}) at byte {at}"));
        }
        if is_format(ch) {
            return Err(format!(
                "contains an invisible format character ({code}) at byte {at}; it can hide or reorder text"
            ));
        }
        if ch.is_whitespace() {
            return Err(format!("contains whitespace ({code}) at byte {at}"));
        }
        if matches!(ch, '@' | ':' | '/') {
            return Err(format!("contains '{ch}' at byte {at}"));
        }
    }
    Ok(())
}

/// Unicode category Cf (15.1): bidi controls, zero-width characters, the
/// BOM, tags. `char::is_control` covers Cc only.
fn is_format(ch: char) -> bool {
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

pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, (at, ch)) in self.0.char_indices().enumerate() {
            if shown == ESCAPED_MAX_CHARS {
                return write!(f, "…(+{} bytes)", self.0.len() - at);
            }
            if is_format(ch) {
                write!(f, "{}", ch.escape_unicode())?;
            } else {
                write!(f, "{}", ch.escape_debug())?;
            }
        }
        Ok(())
    }
}

/// `text` fit for a log line: escaped (no line breaks, no invisible or
/// reordering characters) and at most `ESCAPED_MAX_CHARS` characters.
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}
