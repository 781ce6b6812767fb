//! The key an event is stored under. Two requests with the same key are the
//! same event: the conditional put that archives the first refuses the rest.
//!
//! In order of preference:
//! 1. the sender's event id (`X-Revel-Event-Id`), when it sends one;
//! 2. a business key from the body: the entity's id plus its version
//!    (`uuid@updated_date` for an order or a customer);
//! 3. for bodies with nothing to tell repeats apart (stock toggles, menu
//!    pushes): the receipt instant and the body's SHA-256, so every request
//!    is an event of its own (the processor collapses a repeat that leaves
//!    its entity unchanged; see [`Identity::PerRequest`]);
//! 4. for a body that doesn't parse: its SHA-256, forever (within
//!    retention), so repeats of it are archived once.

use sha2::{Digest, Sha256};

use crate::ids::{EventKey, InstanceName};
use crate::sources::Identity;

/// Longest sender id used verbatim; longer or unusual ones are hashed.
const MAX_VERBATIM_ID: usize = 128;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The parts an event key is derived from.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    pub source: &'a str,
    pub instance: &'a InstanceName,
    pub event_type: &'a str,
    pub sender_event_id: Option<&'a str>,
    /// `None` when the body could not be interpreted (quarantine).
    pub identity: Option<&'a Identity>,
    /// The SHA-256 (hex) of the body.
    pub body_sha256: &'a str,
    /// When the request was received (µs since the epoch).
    pub received_at_micros: i64,
}

fn verbatim_or_hashed(prefix: &str, value: &str) -> String {
    let safe = value.len() <= MAX_VERBATIM_ID && value.bytes().all(|b| b.is_ascii_graphic());
    if safe {
        format!("{prefix}:{value}")
    } else {
        format!("{prefix}-sha256:{}", sha256_hex(value.as_bytes()))
    }
}

pub fn event_key(parts: KeyParts<'_>) -> EventKey {
    let identity = match (parts.sender_event_id, parts.identity) {
        (Some(id), _) => verbatim_or_hashed("id", id),
        (None, Some(Identity::Business(key))) => verbatim_or_hashed("biz", key),
        (None, Some(Identity::PerRequest)) => {
            let hash = &parts.body_sha256[..parts.body_sha256.len().min(32)];
            format!("at:{}:{hash}", parts.received_at_micros)
        }
        (None, None) => format!("sha256:{}", parts.body_sha256),
    };
    let raw = format!(
        "{}:{}:{}:{identity}",
        parts.source, parts.instance, parts.event_type
    );
    // Every part is validated or hashed above, so this can't fail.
    EventKey::parse(&raw).expect("event key parts are printable and bounded")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(
        instance: &'a InstanceName,
        identity: Option<&'a Identity>,
        id: Option<&'a str>,
    ) -> KeyParts<'a> {
        KeyParts {
            source: "revel",
            instance,
            event_type: "order.finalized",
            sender_event_id: id,
            identity,
            body_sha256: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            received_at_micros: 7_200_000_000,
        }
    }

    #[test]
    fn the_senders_event_id_wins_over_the_business_key() {
        let demo = InstanceName::parse("demo").unwrap();
        let business = Identity::Business("u@1".into());
        assert_eq!(
            event_key(parts(&demo, Some(&business), Some("ev-9"))).as_str(),
            "revel:demo:order.finalized:id:ev-9"
        );
        assert_eq!(
            event_key(parts(&demo, Some(&business), None)).as_str(),
            "revel:demo:order.finalized:biz:u@1"
        );
    }

    #[test]
    fn odd_event_ids_are_hashed_not_trusted() {
        let demo = InstanceName::parse("demo").unwrap();
        let key = event_key(parts(&demo, None, Some("has space")));
        assert!(key
            .as_str()
            .starts_with("revel:demo:order.finalized:id-sha256:"));
        let long = "x".repeat(500);
        assert!(event_key(parts(&demo, None, Some(&long))).as_str().len() < 200);
    }

    #[test]
    fn bodies_without_identity_are_keyed_by_their_receipt_and_content() {
        let demo = InstanceName::parse("demo").unwrap();
        let at = |t| {
            event_key(KeyParts {
                received_at_micros: t,
                ..parts(&demo, Some(&Identity::PerRequest), None)
            })
        };
        assert_ne!(at(7_200_000_000), at(7_200_000_001));
        assert_eq!(
            at(7_200_000_000).as_str(),
            "revel:demo:order.finalized:at:7200000000:44136fa355b3678a1146ad16f7e8649e"
        );
        let other_body = event_key(KeyParts {
            body_sha256: "ffff",
            ..parts(&demo, Some(&Identity::PerRequest), None)
        });
        assert_ne!(other_body, at(7_200_000_000));
    }

    #[test]
    fn the_same_id_on_two_instances_is_two_events() {
        let a = InstanceName::parse("a").unwrap();
        let b = InstanceName::parse("b").unwrap();
        assert_ne!(
            event_key(parts(&a, None, Some("1"))),
            event_key(parts(&b, None, Some("1")))
        );
    }
}
