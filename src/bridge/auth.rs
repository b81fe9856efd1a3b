//! Protocol 1.1's mutual proof, without I/O.
//!
//! Each side proves that it knows the shared token without sending it: the
//! proof is HMAC-SHA256 keyed by the token over a transcript of both ids and
//! both fresh nonces. A label per direction keeps the acceptor's proof from
//! being reflected back as the dialer's, and the nonces keep either from being
//! replayed on another connection. The MAC is RustCrypto's `hmac` and `sha2`
//! (no cryptography is written here), and verification goes through
//! `verify_slice`, which compares in constant time.
//!
//! The MAC input is unambiguous: every item, label included, is a u32
//! big-endian length followed by its bytes, in a fixed order (see [`prove`]).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Bytes in a handshake nonce.
pub(crate) const NONCE_BYTES: usize = 32;
/// Bytes in a proof (one SHA-256 output).
pub(crate) const PROOF_BYTES: usize = 32;

/// A handshake nonce: 32 bytes from the operating system's random source,
/// sent as 64 hex digits. Nonces are public, so `Debug` shows them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Nonce([u8; NONCE_BYTES]);

impl Nonce {
    /// A fresh nonce. Fails, rather than panicking, when the operating
    /// system's random source does: a handshake must not go on without one.
    pub(crate) fn random() -> Result<Nonce, NonceError> {
        let mut bytes = [0u8; NONCE_BYTES];
        getrandom::fill(&mut bytes).map_err(NonceError)?;
        Ok(Nonce(bytes))
    }

    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; NONCE_BYTES]) -> Nonce {
        Nonce(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; NONCE_BYTES] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub(crate) fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Exactly 64 hex digits, either case.
    pub(crate) fn from_hex(text: &str) -> Result<Nonce, HexError> {
        from_hex32(text).map(Nonce)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.to_hex())
    }
}

/// The operating system's random source failed.
#[derive(Debug)]
pub(crate) struct NonceError(getrandom::Error);

impl fmt::Display for NonceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no handshake nonce: the operating system's random source failed: {}",
            self.0
        )
    }
}

impl std::error::Error for NonceError {}

/// Text that is not exactly 32 bytes in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HexError {
    /// Not 64 characters long (the count is in bytes of the text).
    Length(usize),
    /// The byte at this position is not a hex digit.
    Digit(usize),
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::Length(len) => write!(f, "expected 64 hex digits, got {len} bytes of text"),
            HexError::Digit(at) => write!(f, "not a hex digit at position {at}"),
        }
    }
}

impl std::error::Error for HexError {}

/// Which side a proof comes from. Each has its own label, so a proof made
/// for one direction never verifies for the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The acceptor proves to the dialer.
    AcceptorToDialer,
    /// The dialer proves to the acceptor.
    DialerToAcceptor,
}

impl Direction {
    fn label(self) -> &'static [u8] {
        match self {
            Direction::AcceptorToDialer => b"reflow-bridge 1.1 acceptor proof",
            Direction::DialerToAcceptor => b"reflow-bridge 1.1 dialer proof",
        }
    }
}

/// What both proofs of one handshake cover: who dials whom, and both nonces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transcript<'a> {
    pub(crate) dialer_network: &'a str,
    pub(crate) dialer_instance: &'a str,
    pub(crate) acceptor_network: &'a str,
    pub(crate) acceptor_instance: &'a str,
    pub(crate) dialer_nonce: &'a Nonce,
    pub(crate) acceptor_nonce: &'a Nonce,
}

/// Why a peer's proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProofError {
    /// The proof is not 64 hex digits: a broken peer rather than a wrong token.
    Malformed(HexError),
    /// Well formed, but not made with our token over this transcript.
    Mismatch,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::Malformed(why) => write!(f, "malformed proof: {why}"),
            ProofError::Mismatch => f.write_str("proof does not match: the peer does not know the token"),
        }
    }
}

impl std::error::Error for ProofError {}

/// HMAC-SHA256 keyed by `token` over, each as a u32 big-endian length and
/// then its bytes: the direction's label, dialer network, dialer instance,
/// acceptor network, acceptor instance, dialer nonce, acceptor nonce.
pub(crate) fn prove(token: &[u8], direction: Direction, t: &Transcript) -> [u8; PROOF_BYTES] {
    mac(token, direction, t).finalize().into_bytes().into()
}

/// [`prove`] as the 64 lowercase hex digits that travel in the handshake.
pub(crate) fn prove_hex(token: &[u8], direction: Direction, t: &Transcript) -> String {
    to_hex(&prove(token, direction, t))
}

/// Checks a peer's hex proof in constant time (`hmac`'s `verify_slice`).
pub(crate) fn verify(
    token: &[u8],
    direction: Direction,
    t: &Transcript,
    proof_hex: &str,
) -> Result<(), ProofError> {
    let proof = from_hex32(proof_hex).map_err(ProofError::Malformed)?;
    mac(token, direction, t)
        .verify_slice(&proof)
        .map_err(|_| ProofError::Mismatch)
}

/// Compares a protocol 1.0 plaintext token with the expected one in time
/// that does not depend on where they differ: both are MACed under one fixed
/// key (as messages, so no padding makes two tokens equal) and the tags are
/// compared by `hmac`'s constant-time `verify_slice`.
pub(crate) fn tokens_equal(expected: &[u8], given: &[u8]) -> bool {
    const KEY: &[u8] = b"reflow-bridge 1.0 token comparison";
    let tag = |token: &[u8]| {
        let mut mac = keyed(KEY);
        mac.update(token);
        mac
    };
    let expected_tag = tag(expected).finalize().into_bytes();
    tag(given).verify_slice(&expected_tag).is_ok()
}

/// HMAC-SHA256 under `key`. HMAC takes keys of any length (RFC 2104), so
/// this never fails; hmac's own `KeyInit::new` relies on the same fact.
fn keyed(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn mac(token: &[u8], direction: Direction, t: &Transcript) -> HmacSha256 {
    framed_mac(
        token,
        &[
            direction.label(),
            t.dialer_network.as_bytes(),
            t.dialer_instance.as_bytes(),
            t.acceptor_network.as_bytes(),
            t.acceptor_instance.as_bytes(),
            t.dialer_nonce.as_bytes(),
            t.acceptor_nonce.as_bytes(),
        ],
    )
}

/// HMAC-SHA256 under `key` over `items`, each as a u32 big-endian length
/// followed by its bytes: an unambiguous encoding of the list, so no two
/// lists MAC the same. Put a label of its own first in every use, so that a
/// tag made for one purpose never verifies for another.
pub(crate) fn framed_mac(key: &[u8], items: &[&[u8]]) -> HmacSha256 {
    let mut mac = keyed(key);
    for item in items {
        // Every item is bounded by a frame or body limit far below 4 GiB,
        // so the length always fits.
        let len = u32::try_from(item.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(item);
    }
    mac
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

pub(crate) fn from_hex32(text: &str) -> Result<[u8; 32], HexError> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return Err(HexError::Length(digits.len()));
    }
    let value = |at: usize| match digits[at] {
        d @ b'0'..=b'9' => Ok(d - b'0'),
        d @ b'a'..=b'f' => Ok(d - b'a' + 10),
        d @ b'A'..=b'F' => Ok(d - b'A' + 10),
        _ => Err(HexError::Digit(at)),
    };
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (value(2 * i)? << 4) | value(2 * i + 1)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_tokens_compare_exactly() {
        assert!(tokens_equal(b"abc", b"abc"));
        assert!(tokens_equal(b"", b""));
        assert!(!tokens_equal(b"abc", b"abd"));
        assert!(!tokens_equal(b"abc", b"abcd"));
        assert!(!tokens_equal(b"abc", b"abc\0"));
        assert!(!tokens_equal(b"abc", b""));
    }

    const TOKEN: &[u8] = b"shared-secret";

    fn nonces() -> (Nonce, Nonce) {
        (Nonce::from_bytes([0x11; 32]), Nonce::from_bytes([0x22; 32]))
    }

    fn transcript<'a>(dialer_nonce: &'a Nonce, acceptor_nonce: &'a Nonce) -> Transcript<'a> {
        Transcript {
            dialer_network: "beta",
            dialer_instance: "beta-1",
            acceptor_network: "alpha",
            acceptor_instance: "alpha-1",
            dialer_nonce,
            acceptor_nonce,
        }
    }

    #[test]
    fn a_proof_verifies_in_its_direction() {
        let (d, a) = nonces();
        let t = transcript(&d, &a);
        for direction in [Direction::AcceptorToDialer, Direction::DialerToAcceptor] {
            let proof = prove_hex(TOKEN, direction, &t);
            assert_eq!(proof.len(), 64);
            assert_eq!(verify(TOKEN, direction, &t, &proof), Ok(()));
            assert_eq!(verify(TOKEN, direction, &t, &proof.to_uppercase()), Ok(()));
        }
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let (d, a) = nonces();
        let t = transcript(&d, &a);
        let proof = prove(TOKEN, Direction::AcceptorToDialer, &t);
        for bit in 0..PROOF_BYTES * 8 {
            let mut bad = proof;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                verify(TOKEN, Direction::AcceptorToDialer, &t, &to_hex(&bad)),
                Err(ProofError::Mismatch),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn a_proof_reflected_to_the_other_direction_is_refused() {
        let (d, a) = nonces();
        let t = transcript(&d, &a);
        let acceptors = prove_hex(TOKEN, Direction::AcceptorToDialer, &t);
        let dialers = prove_hex(TOKEN, Direction::DialerToAcceptor, &t);
        assert_ne!(acceptors, dialers);
        assert_eq!(
            verify(TOKEN, Direction::DialerToAcceptor, &t, &acceptors),
            Err(ProofError::Mismatch)
        );
        assert_eq!(
            verify(TOKEN, Direction::AcceptorToDialer, &t, &dialers),
            Err(ProofError::Mismatch)
        );
    }

    #[test]
    fn a_proof_replayed_with_another_nonce_is_refused() {
        let (d, a) = nonces();
        let fresh = Nonce::from_bytes([0x33; 32]);
        let old = prove_hex(TOKEN, Direction::AcceptorToDialer, &transcript(&d, &a));
        for t in [transcript(&fresh, &a), transcript(&d, &fresh)] {
            assert_eq!(
                verify(TOKEN, Direction::AcceptorToDialer, &t, &old),
                Err(ProofError::Mismatch)
            );
        }
        // Swapping the two nonces is a different transcript too.
        assert_eq!(
            verify(TOKEN, Direction::AcceptorToDialer, &transcript(&a, &d), &old),
            Err(ProofError::Mismatch)
        );
    }

    #[test]
    fn a_proof_for_other_ids_is_refused() {
        let (d, a) = nonces();
        let t = transcript(&d, &a);
        let proof = prove_hex(TOKEN, Direction::AcceptorToDialer, &t);
        let others = [
            Transcript {
                dialer_network: "gamma",
                ..t
            },
            Transcript {
                dialer_instance: "beta-2",
                ..t
            },
            Transcript {
                acceptor_network: "gamma",
                ..t
            },
            Transcript {
                acceptor_instance: "alpha-2",
                ..t
            },
            // Dialer and acceptor swapped.
            Transcript {
                dialer_network: "alpha",
                dialer_instance: "alpha-1",
                acceptor_network: "beta",
                acceptor_instance: "beta-1",
                ..t
            },
        ];
        for other in &others {
            assert_eq!(
                verify(TOKEN, Direction::AcceptorToDialer, other, &proof),
                Err(ProofError::Mismatch),
                "{other:?}"
            );
        }
    }

    #[test]
    fn a_proof_under_another_token_is_refused() {
        let (d, a) = nonces();
        let t = transcript(&d, &a);
        let proof = prove_hex(b"other-secret", Direction::AcceptorToDialer, &t);
        assert_eq!(
            verify(TOKEN, Direction::AcceptorToDialer, &t, &proof),
            Err(ProofError::Mismatch)
        );
        assert_eq!(
            verify(b"", Direction::AcceptorToDialer, &t, &proof),
            Err(ProofError::Mismatch)
        );
    }

    #[test]
    fn length_prefixes_keep_shifted_field_boundaries_apart() {
        // Without length prefixes ("ab", "c") and ("a", "bc") would hash the
        // same bytes.
        let (d, a) = nonces();
        let t = transcript(&d, &a);
        let left = Transcript {
            dialer_network: "ab",
            dialer_instance: "c",
            ..t
        };
        let right = Transcript {
            dialer_network: "a",
            dialer_instance: "bc",
            ..t
        };
        let across = Transcript {
            dialer_instance: "",
            acceptor_network: "alpha",
            ..left
        };
        let across_shifted = Transcript {
            dialer_instance: "alpha",
            acceptor_network: "",
            ..left
        };
        let direction = Direction::AcceptorToDialer;
        assert_ne!(prove(TOKEN, direction, &left), prove(TOKEN, direction, &right));
        assert_ne!(
            prove(TOKEN, direction, &across),
            prove(TOKEN, direction, &across_shifted)
        );
    }

    #[test]
    fn known_answer() {
        // Computed independently with Python's standard library (3.11):
        //
        // python3 -c 'import hmac, hashlib, struct
        // f = lambda b: struct.pack(">I", len(b)) + b
        // m = b"".join(f(x) for x in [b"reflow-bridge 1.1 acceptor proof", b"beta", b"beta-1",
        //     b"alpha", b"alpha-1", bytes(range(32)), bytes(range(32, 64))])
        // print(hmac.new(b"shared-secret", m, hashlib.sha256).hexdigest())'
        //
        // and the same with the label b"reflow-bridge 1.1 dialer proof".
        let d = Nonce::from_bytes(std::array::from_fn(|i| i as u8));
        let a = Nonce::from_bytes(std::array::from_fn(|i| 32 + i as u8));
        let t = transcript(&d, &a);
        assert_eq!(
            prove_hex(TOKEN, Direction::AcceptorToDialer, &t),
            "33dd4c8f7f0b2b1381677eb3bdc9446c96bc2371a336b437383c1b7bb045c711"
        );
        assert_eq!(
            prove_hex(TOKEN, Direction::DialerToAcceptor, &t),
            "2f7b60987ecf4a7e42ec0afa0b78c403cf1832d43215e86a3a11d07f55af267e"
        );
    }

    #[test]
    fn malformed_proofs_are_told_apart_from_mismatches() {
        let (d, a) = nonces();
        let t = transcript(&d, &a);
        let good = prove_hex(TOKEN, Direction::AcceptorToDialer, &t);
        let cases = [
            (String::new(), HexError::Length(0)),
            (good[..63].to_string(), HexError::Length(63)),
            (format!("{good}0"), HexError::Length(65)),
            (format!("g{}", &good[1..]), HexError::Digit(0)),
            (format!("{} ", &good[..63]), HexError::Digit(63)),
            // 64 bytes of text but 63 characters: still refused, never sliced
            // inside a character.
            (format!("é{}", &good[2..]), HexError::Digit(0)),
        ];
        for (text, why) in cases {
            assert_eq!(
                verify(TOKEN, Direction::AcceptorToDialer, &t, &text),
                Err(ProofError::Malformed(why)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn nonces_are_fresh_and_round_trip_through_hex() {
        let first = Nonce::random().expect("random source");
        let second = Nonce::random().expect("random source");
        assert_ne!(first, second);
        let hex = first.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(Nonce::from_hex(&hex), Ok(first.clone()));
        assert_eq!(Nonce::from_hex(&hex.to_uppercase()), Ok(first));
    }

    #[test]
    fn nonce_hex_is_exactly_64_digits() {
        let nonce = Nonce::from_bytes([0xab; 32]);
        assert_eq!(nonce.to_hex(), "ab".repeat(32));
        assert_eq!(format!("{nonce:?}"), format!("Nonce({})", "ab".repeat(32)));
        for (text, why) in [
            ("ab".repeat(31), HexError::Length(62)),
            ("ab".repeat(33), HexError::Length(66)),
            (format!("0x{}", "ab".repeat(31)), HexError::Digit(1)),
            (format!("{}-1", "ab".repeat(31)), HexError::Digit(62)),
            (format!("+{}", "a".repeat(63)), HexError::Digit(0)),
        ] {
            assert_eq!(Nonce::from_hex(&text), Err(why), "{text:?}");
        }
        let mixed = "0123456789abcdefABCDEF".repeat(3)[..64].to_string();
        assert_eq!(
            Nonce::from_hex(&mixed).map(|n| n.to_hex()),
            Ok(mixed.to_lowercase())
        );
    }
}
