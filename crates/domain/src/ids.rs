//! Validated newtypes for the names and keys that cross module boundaries.

use std::fmt;

use crate::error::InvalidId;

/// Serde as a plain string, validated on the way in: a stored record whose
/// key or name no longer parses is refused, not carried along.
macro_rules! text_serde {
    ($name:ident) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A Revel instance name, the subdomain of `{instance}.revelup.com`: 1 to 63
/// characters of lower-case letters, digits and hyphens, not starting or
/// ending with a hyphen. Header values are lower-cased before validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName(String);

impl InstanceName {
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let invalid = |why| InvalidId {
            what: "instance name",
            why,
        };
        let name = raw.trim().to_ascii_lowercase();
        if name.is_empty() || name.len() > 63 {
            return Err(invalid("must be 1 to 63 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid("only letters, digits and hyphens"));
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(invalid("must not start or end with a hyphen"));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for InstanceName {
    type Error = InvalidId;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

text_serde!(InstanceName);

/// Printable ASCII without spaces, at most `max` bytes: safe as a DynamoDB
/// key, in a log line and in an SQS attribute.
fn check_key(what: &'static str, raw: &str, max: usize) -> Result<(), InvalidId> {
    if raw.is_empty() || raw.len() > max {
        return Err(InvalidId {
            what,
            why: "length out of range",
        });
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidId {
            what,
            why: "only printable ASCII without spaces",
        });
    }
    Ok(())
}

/// A printable key newtype with `parse`, `as_str`, `Display` and `TryFrom<&str>`.
macro_rules! key_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = 512;

            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                check_key($what, raw, Self::MAX_LEN)?;
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        text_serde!($name);
    };
}

key_newtype!(
    /// The key an event is archived and deduplicated under:
    /// `{source}:{instance}:{event_type}:{identity}` (see [`crate::idempotency`]).
    EventKey,
    "event key"
);

key_newtype!(
    /// The key of one entity's current state: `{source}:{instance}:{kind}:{id}`.
    EntityKey,
    "entity key"
);

impl EntityKey {
    pub fn new(
        source: impl AsRef<str>,
        instance: &InstanceName,
        kind: impl Into<crate::sources::EntityKind>,
        id: &str,
    ) -> Result<Self, InvalidId> {
        let source = source.as_ref();
        let kind = kind.into();
        Self::parse(&format!("{source}:{instance}:{kind}:{id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_lower_cased_and_validated() {
        assert_eq!(InstanceName::parse("Demo").unwrap().as_str(), "demo");
        assert_eq!(
            InstanceName::parse("my-bar-2").unwrap().as_str(),
            "my-bar-2"
        );
        for bad in ["", "-x", "x-", "a.b", "a/b", "a b", "ü", &"a".repeat(64)] {
            assert!(InstanceName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keys_refuse_spaces_control_characters_and_overlong_values() {
        assert!(EventKey::parse("revel:demo:order.finalized:id:1").is_ok());
        assert!(EventKey::parse("a b").is_err());
        assert!(EventKey::parse("a\nb").is_err());
        assert!(EventKey::parse("").is_err());
        assert!(EventKey::parse(&"k".repeat(EventKey::MAX_LEN + 1)).is_err());
    }

    #[test]
    fn entity_keys_join_their_parts() {
        let instance = InstanceName::parse("demo").unwrap();
        let order = crate::sources::EntityKind::new("order");
        let key = EntityKey::new("revel", &instance, order, "abc").unwrap();
        assert_eq!(key.as_str(), "revel:demo:order:abc");
    }
}
