//! Revel's `X-Revel-Signature`: the hex HMAC-SHA1 of the raw request body
//! under the instance's shared secret.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use ports::secrets::WebhookSecret;

type HmacSha1 = Hmac<Sha1>;

/// Length of an HMAC-SHA1 in bytes; a header that does not decode to exactly
/// this many bytes is refused before any comparison.
pub const SIGNATURE_LEN: usize = 20;

/// The lower-case hex signature Revel would send for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha1::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A signature header decoded to bytes; upper- and lower-case hex both decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedSignature([u8; SIGNATURE_LEN]);

impl ClaimedSignature {
    pub fn parse(header: &str) -> Option<Self> {
        let mut bytes = [0u8; SIGNATURE_LEN];
        hex::decode_to_slice(header.trim(), &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// True when any of `secrets` (one, or two during a rotation) signs `body`
    /// to this signature. Each comparison is constant-time (`verify_slice`).
    pub fn is_valid_for(&self, body: &[u8], secrets: &[WebhookSecret]) -> bool {
        secrets.iter().any(|secret| {
            let mut mac = HmacSha1::new_from_slice(secret.expose().as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(body);
            mac.verify_slice(&self.0).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secrets(values: &[&str]) -> Vec<WebhookSecret> {
        values.iter().map(|v| WebhookSecret::new(v)).collect()
    }

    #[test]
    fn matches_the_python_example_in_revels_documentation() {
        // hmac.new(b"demo-webhook-secret", b'{"ping": "pong"}', sha1).hexdigest()
        assert_eq!(
            sign(b"demo-webhook-secret", br#"{"ping": "pong"}"#),
            "a2232b6a38688b0e1b4822de36732d210a7bb695"
        );
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        let body = b"{}";
        let sig = sign(b"s", body).to_uppercase();
        assert!(ClaimedSignature::parse(&sig)
            .unwrap()
            .is_valid_for(body, &secrets(&["s"])));
    }

    #[test]
    fn wrong_lengths_and_non_hex_are_refused() {
        assert!(ClaimedSignature::parse("").is_none());
        assert!(ClaimedSignature::parse("abcd").is_none());
        assert!(ClaimedSignature::parse(&"0".repeat(42)).is_none());
        assert!(ClaimedSignature::parse(&"z".repeat(40)).is_none());
    }

    #[test]
    fn either_secret_of_a_rotation_is_accepted() {
        let body = b"payload";
        let old = ClaimedSignature::parse(&sign(b"old", body)).unwrap();
        let new = ClaimedSignature::parse(&sign(b"new", body)).unwrap();
        let both = secrets(&["new", "old"]);
        assert!(old.is_valid_for(body, &both));
        assert!(new.is_valid_for(body, &both));
        assert!(!old.is_valid_for(body, &secrets(&["new"])));
    }

    proptest! {
        #[test]
        fn any_changed_byte_breaks_the_signature(body in proptest::collection::vec(any::<u8>(), 1..512), index in any::<usize>(), flip in 1u8..=255) {
            let claimed = ClaimedSignature::parse(&sign(b"k", &body)).unwrap();
            let mut tampered = body.clone();
            let i = index % tampered.len();
            tampered[i] ^= flip;
            prop_assert!(claimed.is_valid_for(&body, &secrets(&["k"])));
            prop_assert!(!claimed.is_valid_for(&tampered, &secrets(&["k"])));
        }
    }
}
