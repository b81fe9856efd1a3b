//! Signed discovery requests: a registration or deregistration (and, when
//! the server asks for it, a roster read) carries an HMAC-SHA256 under the
//! federation's token over its method, request target, timestamp and body.
//!
//! Headers (see `docs/discovery.md`, "Signed requests"):
//!
//! ```text
//! X-Reflow-Timestamp: 1767225600          Unix time in seconds, the signer's clock
//! X-Reflow-Signature: 64 lowercase hex digits
//! ```
//!
//! The signature is HMAC-SHA256 keyed by the token over five items, each a
//! u32 big-endian length followed by its bytes: the label
//! `reflow-discovery 1 request`, the method (`POST`), the request target as
//! sent (`/networks/alpha?instance_id=alpha-1`), the timestamp as sent
//! (decimal text) and the body. The label keeps a discovery signature from
//! ever verifying as a bridge proof, and the other way round. A server
//! refuses a timestamp further than its window (30 s by default) from its
//! own clock, so a captured request cannot be replayed later than that.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::Mac;

use crate::bridge::auth::{framed_mac, from_hex32, to_hex};

/// Header carrying the signer's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "X-Reflow-Timestamp";
/// Header carrying the signature, 64 hex digits.
pub const SIGNATURE_HEADER: &str = "X-Reflow-Signature";
/// How far a timestamp may be from the server's clock, either way. Default 30 s.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

const LABEL: &[u8] = b"reflow-discovery 1 request";

/// The signature of a request: 64 lowercase hex digits.
pub fn sign(token: &[u8], method: &str, target: &str, timestamp: &str, body: &[u8]) -> String {
    to_hex(
        &mac(token, method, target, timestamp, body)
            .finalize()
            .into_bytes(),
    )
}

/// The two headers that sign a request made now, as (name, value) pairs.
pub fn signed_headers(token: &[u8], method: &str, target: &str, body: &[u8]) -> [(&'static str, String); 2] {
    let timestamp = unix_now().to_string();
    let signature = sign(token, method, target, &timestamp, body);
    [(TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)]
}

fn mac(
    token: &[u8],
    method: &str,
    target: &str,
    timestamp: &str,
    body: &[u8],
) -> crate::bridge::auth::HmacSha256 {
    framed_mac(
        token,
        &[
            LABEL,
            method.as_bytes(),
            target.as_bytes(),
            timestamp.as_bytes(),
            body,
        ],
    )
}

/// The current Unix time in seconds (0 if the clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a request's signature was refused. The text is what the client is
/// told (401) and what the server logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// A header is missing.
    Missing(&'static str),
    /// The timestamp is not a whole number of seconds.
    BadTimestamp,
    /// The timestamp is outside the window: `skew` seconds ahead (positive)
    /// or behind (negative) the server's clock.
    Skewed {
        /// Signer's clock minus the server's, in seconds.
        skew: i64,
        /// The window, in seconds.
        window: u64,
    },
    /// The signature is not 64 hex digits.
    Malformed,
    /// Well formed, but not made with this server's token over this request.
    Mismatch,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Missing(header) => write!(
                f,
                "missing {header} header: this server accepts only signed requests \
                 (give the peer the federation's auth_token)"
            ),
            AuthError::BadTimestamp => write!(f, "{TIMESTAMP_HEADER} is not a Unix time in seconds"),
            AuthError::Skewed { skew, window } => write!(
                f,
                "{TIMESTAMP_HEADER} is {} s {} the server's clock, outside the ±{window} s window \
                 (a replayed request, or clocks that disagree: check NTP)",
                skew.unsigned_abs(),
                if *skew > 0 { "ahead of" } else { "behind" }
            ),
            AuthError::Malformed => write!(f, "{SIGNATURE_HEADER} is not 64 hex digits"),
            AuthError::Mismatch => write!(
                f,
                "bad signature: not made with this server's token over this request \
                 (the peer's auth_token differs from the server's)"
            ),
        }
    }
}

impl std::error::Error for AuthError {}

/// A request as the server checks it.
pub(crate) struct Signed<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) timestamp: Option<&'a str>,
    pub(crate) signature: Option<&'a str>,
    pub(crate) body: &'a [u8],
}

/// Checks a request's timestamp (within `window` of `now`, Unix seconds)
/// and signature (in constant time, `hmac`'s `verify_slice`).
pub(crate) fn verify(
    token: &[u8],
    request: &Signed<'_>,
    now: u64,
    window: Duration,
) -> Result<(), AuthError> {
    let timestamp = request.timestamp.ok_or(AuthError::Missing(TIMESTAMP_HEADER))?;
    let signature = request.signature.ok_or(AuthError::Missing(SIGNATURE_HEADER))?;
    let sent: u64 = timestamp
        .parse()
        .ok()
        .filter(|_| timestamp.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(AuthError::BadTimestamp)?;
    let skew = i128::from(sent) - i128::from(now);
    if skew.unsigned_abs() > u128::from(window.as_secs()) {
        return Err(AuthError::Skewed {
            skew: i64::try_from(skew).unwrap_or(if skew > 0 { i64::MAX } else { i64::MIN }),
            window: window.as_secs(),
        });
    }
    let tag = from_hex32(signature).map_err(|_| AuthError::Malformed)?;
    mac(token, request.method, request.target, timestamp, request.body)
        .verify_slice(&tag)
        .map_err(|_| AuthError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"discovery-secret";
    const NOW: u64 = 1_767_225_600;

    fn request<'a>(timestamp: &'a str, signature: &'a str, body: &'a [u8]) -> Signed<'a> {
        Signed {
            method: "POST",
            target: "/register",
            timestamp: Some(timestamp),
            signature: Some(signature),
            body,
        }
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let body = br#"{"network_id":"alpha"}"#;
        let ts = NOW.to_string();
        let sig = sign(TOKEN, "POST", "/register", &ts, body);
        assert_eq!(sig.len(), 64);
        let window = DEFAULT_WINDOW;
        assert_eq!(verify(TOKEN, &request(&ts, &sig, body), NOW, window), Ok(()));
        assert_eq!(
            verify(TOKEN, &request(&ts, &sig.to_uppercase(), body), NOW, window),
            Ok(())
        );
        let other_body = br#"{"network_id":"alphb"}"#;
        assert_eq!(
            verify(TOKEN, &request(&ts, &sig, other_body), NOW, window),
            Err(AuthError::Mismatch)
        );
        let mut other_target = request(&ts, &sig, body);
        other_target.target = "/register?x";
        assert_eq!(
            verify(TOKEN, &other_target, NOW, window),
            Err(AuthError::Mismatch)
        );
        let mut other_method = request(&ts, &sig, body);
        other_method.method = "DELETE";
        assert_eq!(
            verify(TOKEN, &other_method, NOW, window),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            verify(b"other-token", &request(&ts, &sig, body), NOW, window),
            Err(AuthError::Mismatch)
        );
        let later = (NOW + 1).to_string();
        assert_eq!(
            verify(TOKEN, &request(&later, &sig, body), NOW, window),
            Err(AuthError::Mismatch),
            "the timestamp is signed"
        );
    }

    #[test]
    fn timestamps_outside_the_window_are_refused_either_way() {
        let window = DEFAULT_WINDOW;
        for (sent, ok) in [
            (NOW - 30, true),
            (NOW + 30, true),
            (NOW - 31, false),
            (NOW + 31, false),
        ] {
            let ts = sent.to_string();
            let sig = sign(TOKEN, "POST", "/register", &ts, b"");
            let result = verify(TOKEN, &request(&ts, &sig, b""), NOW, window);
            assert_eq!(result.is_ok(), ok, "{sent}: {result:?}");
        }
        let ts = (NOW - 31).to_string();
        let sig = sign(TOKEN, "POST", "/register", &ts, b"");
        let err = verify(TOKEN, &request(&ts, &sig, b""), NOW, window).expect_err("late");
        assert_eq!(
            err,
            AuthError::Skewed {
                skew: -31,
                window: 30
            }
        );
        assert!(err.to_string().contains("31 s behind"), "{err}");
    }

    #[test]
    fn missing_or_malformed_headers_say_which() {
        let mut r = request("1", "00", b"");
        r.timestamp = None;
        assert_eq!(
            verify(TOKEN, &r, NOW, DEFAULT_WINDOW),
            Err(AuthError::Missing(TIMESTAMP_HEADER))
        );
        let ts = NOW.to_string();
        let mut r = request(&ts, "", b"");
        r.signature = None;
        assert_eq!(
            verify(TOKEN, &r, NOW, DEFAULT_WINDOW),
            Err(AuthError::Missing(SIGNATURE_HEADER))
        );
        for bad in ["+1767225600", "1e9", "", "17672256000000000000000"] {
            let r = request(bad, "00", b"");
            assert_eq!(
                verify(TOKEN, &r, NOW, DEFAULT_WINDOW),
                Err(AuthError::BadTimestamp),
                "{bad:?}"
            );
        }
        let r = request(&ts, "zz", b"");
        assert_eq!(verify(TOKEN, &r, NOW, DEFAULT_WINDOW), Err(AuthError::Malformed));
    }

    /// Pins the encoding: an independent computation with `hmac` directly.
    #[test]
    fn the_signature_is_hmac_sha256_over_length_prefixed_items() {
        use hmac::{Hmac, KeyInit};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(TOKEN).expect("any key length");
        for item in [
            &b"reflow-discovery 1 request"[..],
            b"DELETE",
            b"/networks/a?instance_id=a-1",
            b"1767225600",
            b"",
        ] {
            mac.update(&u32::try_from(item.len()).expect("short").to_be_bytes());
            mac.update(item);
        }
        let expected = to_hex(&mac.finalize().into_bytes());
        assert_eq!(
            sign(TOKEN, "DELETE", "/networks/a?instance_id=a-1", "1767225600", b""),
            expected
        );
    }
}
