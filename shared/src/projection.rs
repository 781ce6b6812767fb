//! Reads only some fields of a JSON body: the receivers' parse.
//!
//! A receiver needs of a body only what its event key and entity key are
//! made of (an order's `orderInfo.uuid` and `updated_date`); the processor
//! reads the whole body again from the record. So the receiver projects the
//! body onto those fields: every byte is still parsed (invalid JSON is still
//! refused, trailing bytes too), but only the named fields become values;
//! everything else is skipped without being built. For a 9 KB order that is
//! a fraction of building the whole `Value` (docs/performance.md).
//!
//! The projection of a body is the body with every object on the paths
//! reduced to the named keys: interpreting it reads the same fields as
//! interpreting the whole body, so it finds the same identity and refuses
//! the same bodies, as long as the paths name every field the
//! interpretation's checks read.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A path of keys from the top of the body: `&["orderInfo", "uuid"]`.
pub type Path = &'static [&'static str];

/// The body with only the values at `paths` kept. A body that is not an
/// object is returned whole (no path can be read in it). A value on the way
/// to a path that is not an object is kept whole too, so what reads the
/// projection sees it exactly as in the body.
pub fn project(body: &[u8], paths: &[Path]) -> serde_json::Result<Value> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return serde_json::from_slice(body);
    }
    let below: Vec<&[&str]> = paths.iter().map(|p| &p[..]).collect();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = Level(&below).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// One object on the paths, with the paths that go on from it.
struct Level<'p>(&'p [&'p [&'p str]]);

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(Key(key)) = map.next_key()? {
            let below: Vec<&[&str]> = self
                .0
                .iter()
                .filter(|path| path.first() == Some(&&*key))
                .map(|path| &path[1..])
                .collect();
            if below.is_empty() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = if below.iter().any(|rest| rest.is_empty()) {
                map.next_value::<Value>()?
            } else {
                // On the way to a path: an object is projected in turn,
                // anything else kept whole.
                let raw: &RawValue = map.next_value()?;
                let value = if raw.get().starts_with('{') {
                    let mut inner = serde_json::Deserializer::from_str(raw.get());
                    Level(&below).deserialize(&mut inner)
                } else {
                    serde_json::from_str(raw.get())
                };
                value.map_err(de::Error::custom)?
            };
            // A key given twice keeps its last value, as a whole parse does.
            kept.insert(key.into_owned(), value);
        }
        Ok(Value::Object(kept))
    }
}

/// An object's key, borrowed from the body unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORDER: &[Path] = &[&["orderInfo", "uuid"], &["orderInfo", "updated_date"]];

    fn projected(body: &str, paths: &[Path]) -> serde_json::Result<Value> {
        project(body.as_bytes(), paths)
    }

    #[test]
    fn only_the_named_fields_are_kept_at_every_level() {
        let body = r#"{"orderInfo": {"uuid": "o-1", "updated_date": "2026-11-30T10:00:00", "total": 12.5,
            "gift_reward_data": "{\"a\": 1}"}, "items": [{"id": 1}, {"id": 2}], "payments": []}"#;
        assert_eq!(
            projected(body, ORDER).unwrap(),
            json!({"orderInfo": {"uuid": "o-1", "updated_date": "2026-11-30T10:00:00"}})
        );
    }

    #[test]
    fn invalid_json_anywhere_is_refused_even_where_nothing_is_kept() {
        assert!(projected(r#"{"orderInfo": {"uuid": "o"}, "items": [1, 2"#, ORDER).is_err());
        assert!(projected(r#"{"orderInfo": {"uuid": "o"}, "items": [1,, 2]}"#, ORDER).is_err());
        assert!(projected(r#"{"orderInfo": {"uuid": "o"}} trailing"#, ORDER).is_err());
    }

    #[test]
    fn a_value_on_the_way_that_is_not_an_object_is_kept_whole() {
        assert_eq!(
            projected(r#"{"orderInfo": "o-1", "items": []}"#, ORDER).unwrap(),
            json!({"orderInfo": "o-1"})
        );
        assert_eq!(
            projected(r#"{"orderInfo": [1, {"uuid": "x"}]}"#, ORDER).unwrap(),
            json!({"orderInfo": [1, {"uuid": "x"}]})
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_read_whole() {
        assert_eq!(projected(" [1, 2]", ORDER).unwrap(), json!([1, 2]));
        assert_eq!(projected("\"text\"", ORDER).unwrap(), json!("text"));
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_a_whole_parse_does() {
        let body = r#"{"uuid": "first", "uuid": "second", "updated_date": null}"#;
        let whole: Value = serde_json::from_str(body).unwrap();
        let part = projected(body, &[&["uuid"], &["updated_date"]]).unwrap();
        assert_eq!(part["uuid"], whole["uuid"]);
        assert_eq!(part, json!({"uuid": "second", "updated_date": null}));
    }

    #[test]
    fn escaped_keys_are_matched_by_what_they_spell() {
        assert_eq!(
            projected(r#"{"u\u0075id": 7, "other": 1}"#, &[&["uuid"]]).unwrap(),
            json!({"uuid": 7})
        );
    }
}
