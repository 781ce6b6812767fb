//! The key an event is stored under. Two deliveries with the same key are the
//! same event: the conditional put that archives the first refuses the rest.
//!
//! In order of preference:
//! 1. the sender's event id (`X-Revel-Event-Id`), when it sends one;
//! 2. a business key from the body: the entity's id plus its version
//!    (`uuid@updated_date` for an order or a customer);
//! 3. the SHA-256 of the body: for a body that doesn't parse, forever (within
//!    retention); for bodies with nothing to tell repeats apart (stock
//!    toggles, menu pushes), within [`CONTENT_WINDOW`], so a retry is a
//!    duplicate but the same toggle an hour later is a new event.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::ids::{EventKey, InstanceName};
use crate::sources::Identity;

/// Revel retries a failed delivery for about 36 minutes; identical
/// content-keyed bodies within the same hour are taken as one event.
pub const CONTENT_WINDOW: Duration = Duration::from_secs(3600);

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
    pub delivery_id: Option<&'a str>,
    /// `None` when the body could not be interpreted (quarantine).
    pub identity: Option<&'a Identity>,
    /// The SHA-256 (hex) of the body.
    pub body_sha256: &'a str,
    pub received_at_unix: i64,
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
    let identity = match (parts.delivery_id, parts.identity) {
        (Some(id), _) => verbatim_or_hashed("id", id),
        (None, Some(Identity::Business(key))) => verbatim_or_hashed("biz", key),
        (None, Some(Identity::ContentWithin(window))) => {
            // A positive divisor whatever the window (`as i64` would turn
            // one of 2^63 s or more negative, and i64::MIN / -1 overflows).
            let secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX).max(1);
            let window = parts.received_at_unix.div_euclid(secs);
            format!("sha256:{}@w{window}", parts.body_sha256)
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
            delivery_id: id,
            identity,
            body_sha256: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            received_at_unix: 7200,
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
    fn content_keys_repeat_within_the_window_and_not_across_it() {
        let demo = InstanceName::parse("demo").unwrap();
        let content = Identity::ContentWithin(CONTENT_WINDOW);
        let at = |t| {
            event_key(KeyParts {
                received_at_unix: t,
                ..parts(&demo, Some(&content), None)
            })
        };
        assert_eq!(at(7200), at(7200 + 3599));
        assert_ne!(at(7200), at(7200 + 3600));
    }

    /// Found while writing the `event_key` fuzz target (arbitrary parts):
    /// a window of u64::MAX seconds became a divisor of -1, and the earliest
    /// receipt time then overflowed.
    #[test]
    fn a_content_window_too_long_for_a_signed_number_neither_panics_nor_goes_negative() {
        let demo = InstanceName::parse("demo").unwrap();
        let forever = Identity::ContentWithin(Duration::from_secs(u64::MAX));
        for at in [i64::MIN, -1, 0, i64::MAX] {
            let key = event_key(KeyParts {
                received_at_unix: at,
                ..parts(&demo, Some(&forever), None)
            });
            let (_, window) = key.as_str().rsplit_once("@w").unwrap();
            let window: i64 = window.parse().unwrap();
            assert_eq!(window < 0, at < 0, "{key}");
        }
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
