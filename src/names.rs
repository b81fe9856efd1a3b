//! TEMP stub
use std::fmt;
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 256
        || id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '@' | ':' | '/'))
    {
        Err("bad".into())
    } else {
        Ok(())
    }
}
pub struct Escaped<'a>(&'a str);
impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_debug())
    }
}
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}
