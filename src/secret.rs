//! `Secret`: a value that must never be printed, such as the bridge's
//! shared auth token.

use std::fmt;

use zeroize::Zeroizing;

/// A shared secret (the bridge's auth token).
///
/// `Debug` and `Display` print `<redacted>`, so a secret inside a config
/// struct never reaches a log line or a panic message, and its bytes are
/// overwritten with zeros when it is dropped (by the `zeroize` crate, whose
/// writes the compiler may not elide). Read it with [`Secret::expose`] only
/// where the bytes are needed (the handshake's HMAC key).
///
/// Equality compares the bytes directly and is meant for configs, not for
/// authentication: the handshake checks proofs in constant time instead.
///
/// ```
/// use reflow_distributed::Secret;
///
/// let token = Secret::from("hunter2");
/// assert_eq!(token.expose(), "hunter2");
/// assert_eq!(format!("{token} {token:?}"), "<redacted> Secret(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`; the `String` is moved, not copied, so no unzeroed copy
    /// is left behind.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret text, for the code that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for the empty string (which the peer config refuses as a token).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Serde for an optional secret written as plain text, for the one place
/// the token crosses the wire in clear (a protocol 1.0 handshake with
/// `legacy_auth`): `#[serde(default, with = "crate::secret::optional_text")]`.
pub(crate) mod optional_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Secret;

    pub(crate) fn serialize<S: Serializer>(value: &Option<Secret>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(secret) => serializer.serialize_some(secret.expose()),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?.map(Secret::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let secret = Secret::from(String::from("hunter2"));
        let shown = format!("{secret} {secret:?} {:?} {:#?}", Some(&secret), secret);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(secret.expose(), "hunter2");
    }
}
