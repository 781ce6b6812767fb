//! Reads only some fields of a JSON body: the receivers' parse.
//!
//! A receiver needs of a body only what its event key and entity key are
//! made of (an order's `orderInfo.uuid` and `updated_date`); the processor
//! reads the whole body again from the record. So the receiver projects the
//! body onto those fields: every byte is still read as a whole parse reads
//! it, so what a whole parse refuses is refused (invalid JSON, trailing
//! bytes, a number out of range, a lone surrogate, nesting past the parser's
//! depth limit), but only the named fields become values; everything else
//! is checked without being built. For a 9 KB order that is a fraction of
//! building the whole `Value` (docs/performance.md).
//!
//! The projection of a body is the body with every object on the paths
//! reduced to the named keys: interpreting it reads the same fields as
//! interpreting the whole body, so it finds the same identity and refuses
//! the same bodies, as long as the paths name every field the
//! interpretation's checks read.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A path of keys from the top of the body: `&["orderInfo", "uuid"]`.
pub type Path = &'static [&'static str];

/// The body with only the values at `paths` kept. A body that is not an
/// object is returned whole (no path can be read in it). A value on the way
/// to a path that is not an object is kept whole too, so what reads the
/// projection sees it exactly as in the body.
pub fn project(body: &[u8], paths: &[Path]) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = Level(paths).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// One object on the paths, with the paths that go on from it.
struct Level<'p>(&'p [&'p [&'p str]]);

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// An object on the paths is projected; anything else there is kept whole,
/// so what reads the projection sees it exactly as in the body.
impl<'de> Visitor<'de> for Level<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
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
                map.next_value_seed(Checked)?;
                continue;
            }
            let value = if below.iter().any(|rest| rest.is_empty()) {
                map.next_value::<Value>()?
            } else {
                // On the way to a path, on the same parser: its nesting
                // counts toward the same depth limit as a whole parse's.
                map.next_value_seed(Level(&below))?
            };
            // A key given twice keeps its last value, as a whole parse does.
            kept.insert(key.into_owned(), value);
        }
        Ok(Value::Object(kept))
    }
}

/// A value nothing is kept of, read as a whole parse reads it, so it is
/// refused for what a whole parse refuses: a number out of range, a lone
/// surrogate, invalid UTF-8, nesting past the parser's depth limit.
/// (`IgnoredAny` checks the syntax only.)
struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Checked)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Checked)?.is_some() {
            map.next_value_seed(Checked)?;
        }
        Ok(())
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
    fn what_a_whole_parse_refuses_is_refused_where_nothing_is_kept_too() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let surrogate = r#""\ud800""#;
        for skipped in ["1e400", surrogate, deep.as_str()] {
            let body = format!(
                r#"{{"orderInfo": {{"uuid": "o", "note": {skipped}}}, "items": {skipped}}}"#
            );
            assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
            assert!(projected(&body, ORDER).is_err(), "{body}");
        }
        let mut invalid_utf8 = br#"{"orderInfo": {"uuid": "o"}, "items": [""#.to_vec();
        invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
        invalid_utf8.extend_from_slice(br#""]}"#);
        assert!(serde_json::from_slice::<Value>(&invalid_utf8).is_err());
        assert!(project(&invalid_utf8, ORDER).is_err());
    }

    #[test]
    fn nesting_on_the_way_to_a_path_counts_toward_the_same_depth_limit() {
        // 127 levels of arrays under `orderInfo` then its object: past the
        // parser's limit of 128 as a whole, so refused as a whole is.
        let body = format!(
            r#"{{"orderInfo": {{"uuid": "o", "deep": {}{}}}}}"#,
            "[".repeat(127),
            "]".repeat(127)
        );
        assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
        assert!(projected(&body, ORDER).is_err(), "{body}");
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
