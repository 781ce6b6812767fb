//! DynamoDB attribute values as the wire carries them (`{"S": "a"}`):
//! checked as the service checks them, numbers kept in the service's
//! canonical form (`"01.50"` is stored and returned as `"1.5"`), sized
//! and compared as the service does.

use std::cmp::Ordering;

use base64::Engine;
use serde_json::{Map, Value};

use super::Fault;

/// An item: attribute name to attribute value.
pub(super) type Item = Map<String, Value>;

/// A DynamoDB number: `0.d₁d₂… × 10^exponent`, digits without leading or
/// trailing zeros (none at all for zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Number {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

/// DynamoDB's limits on numbers: 38 significant digits, magnitudes from
/// 1E-130 up to (not including) 1E126.
const MAX_DIGITS: usize = 38;
const MIN_EXPONENT: i64 = -129;
const MAX_EXPONENT: i64 = 126;

impl Number {
    /// Reads `[+-]digits[.digits][e[+-]digits]`, or `None` when it is not a number.
    pub(super) fn parse(text: &str) -> Option<Number> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        if !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let all: Vec<u8> = whole
            .bytes()
            .chain(fraction.bytes())
            .map(|b| b - b'0')
            .collect();
        let leading = all.iter().take_while(|&&d| d == 0).count();
        let mut digits = all[leading..].to_vec();
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Number {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        Some(Number {
            negative,
            exponent: whole.len() as i64 - leading as i64 + exponent,
            digits,
        })
    }

    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// The form DynamoDB stores and returns: plain notation, no exponent.
    pub(super) fn canonical(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let digits: String = self.digits.iter().map(|d| char::from(b'0' + d)).collect();
        let len = digits.len() as i64;
        let body = if self.exponent <= 0 {
            format!("0.{}{digits}", "0".repeat((-self.exponent) as usize))
        } else if self.exponent >= len {
            format!("{digits}{}", "0".repeat((self.exponent - len) as usize))
        } else {
            let (whole, fraction) = digits.split_at(self.exponent as usize);
            format!("{whole}.{fraction}")
        };
        if self.negative {
            format!("-{body}")
        } else {
            body
        }
    }

    /// Bytes it takes in an item: about one per two significant digits,
    /// plus one (DynamoDB's "item size" rule).
    fn size(&self) -> usize {
        self.digits.len().div_ceil(2) + 1
    }

    fn magnitude_cmp(&self, other: &Number) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => self
                .exponent
                .cmp(&other.exponent)
                .then_with(|| self.digits.cmp(&other.digits)),
        }
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        let sign = |n: &Number| match (n.is_zero(), n.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        match sign(self).cmp(&sign(other)) {
            Ordering::Equal if self.negative => other.magnitude_cmp(self),
            Ordering::Equal => self.magnitude_cmp(other),
            unequal => unequal,
        }
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn invalid(message: impl Into<String>) -> Fault {
    Fault::validation(message)
}

/// A number as DynamoDB accepts it, in canonical form.
fn number(text: &str) -> Result<String, Fault> {
    let n = Number::parse(text).ok_or_else(|| {
        invalid(format!(
            "The parameter cannot be converted to a numeric value: {text}"
        ))
    })?;
    if n.digits.len() > MAX_DIGITS {
        return Err(invalid(
            "Attempting to store more than 38 significant digits in a Number",
        ));
    }
    if !n.is_zero() && n.exponent > MAX_EXPONENT {
        return Err(invalid("Number overflow. Attempting to store a number with magnitude larger than supported range"));
    }
    if !n.is_zero() && n.exponent < MIN_EXPONENT {
        return Err(invalid("Number underflow. Attempting to store a number with magnitude smaller than supported range"));
    }
    Ok(n.canonical())
}

fn bytes(text: &str) -> Result<Vec<u8>, Fault> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| invalid("Invalid Binary value: not valid base64"))
}

fn set(kind: &str, members: &Value) -> Result<Value, Fault> {
    let name = match kind {
        "SS" => "string",
        "NS" => "number",
        _ => "binary",
    };
    let members = members
        .as_array()
        .ok_or_else(|| invalid(format!("{kind} must be a list")))?;
    if members.is_empty() {
        return Err(invalid(format!(
            "One or more parameter values were invalid: An {name} set  may not be empty"
        )));
    }
    let mut checked = Vec::with_capacity(members.len());
    for member in members {
        let text = member
            .as_str()
            .ok_or_else(|| invalid(format!("{kind} members must be strings")))?;
        checked.push(match kind {
            "NS" => number(text)?,
            "BS" => {
                bytes(text)?;
                text.to_owned()
            }
            _ => text.to_owned(),
        });
    }
    let mut sorted = checked.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != checked.len() {
        return Err(invalid(format!(
            "Input collection [{}] contains duplicates.",
            checked.join(", ")
        )));
    }
    // A set has no order: kept sorted so that equal sets are equal values.
    Ok(Value::Array(
        sorted.into_iter().map(Value::String).collect(),
    ))
}

/// `value` checked as DynamoDB checks an attribute value, numbers in canonical form.
pub(super) fn checked(value: &Value) -> Result<Value, Fault> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid("Supplied AttributeValue is not an object"))?;
    let mut entries = object.iter();
    let (kind, inner) = match (entries.next(), entries.next()) {
        (None, _) => {
            return Err(invalid(
                "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes",
            ))
        }
        (Some(entry), None) => entry,
        (Some(_), Some(_)) => {
            return Err(invalid(
                "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
            ))
        }
    };
    let checked = match (kind.as_str(), inner) {
        ("S", Value::String(_)) | ("BOOL", Value::Bool(_)) => inner.clone(),
        ("N", Value::String(text)) => Value::String(number(text)?),
        ("B", Value::String(text)) => {
            bytes(text)?;
            inner.clone()
        }
        ("NULL", Value::Bool(true)) => inner.clone(),
        ("NULL", _) => {
            return Err(invalid(
                "One or more parameter values were invalid: Null attribute value types must have the value of true",
            ))
        }
        ("M", Value::Object(map)) => Value::Object(checked_item(map)?),
        ("L", Value::Array(list)) => {
            Value::Array(list.iter().map(checked).collect::<Result<_, _>>()?)
        }
        ("SS" | "NS" | "BS", members) => set(kind, members)?,
        (other, _) => {
            return Err(invalid(format!(
                "Supplied AttributeValue has an unknown or malformed datatype: {other}"
            )))
        }
    };
    let mut out = Map::new();
    out.insert(kind.clone(), checked);
    Ok(Value::Object(out))
}

/// Every attribute of `item` [`checked`].
pub(super) fn checked_item(item: &Map<String, Value>) -> Result<Item, Fault> {
    item.iter()
        .map(|(name, value)| Ok((name.clone(), checked(value)?)))
        .collect()
}

/// The type letter and inner value of a checked attribute value.
pub(super) fn kind(value: &Value) -> (&str, &Value) {
    value
        .as_object()
        .and_then(|o| o.iter().next())
        .map_or(("", &Value::Null), |(k, v)| (k.as_str(), v))
}

/// Its size as DynamoDB counts it for the 400 KB limit and capacity units.
pub(super) fn size(value: &Value) -> usize {
    match kind(value) {
        ("S", Value::String(s)) => s.len(),
        ("N", Value::String(n)) => Number::parse(n).map_or(n.len(), |n| n.size()),
        ("B", Value::String(b)) => bytes(b).map_or(0, |b| b.len()),
        ("BOOL" | "NULL", _) => 1,
        ("SS", Value::Array(members)) => {
            members.iter().filter_map(Value::as_str).map(str::len).sum()
        }
        ("NS", Value::Array(members)) => members
            .iter()
            .filter_map(Value::as_str)
            .map(|n| Number::parse(n).map_or(n.len(), |n| n.size()))
            .sum(),
        ("BS", Value::Array(members)) => members
            .iter()
            .filter_map(Value::as_str)
            .map(|b| bytes(b).map_or(0, |b| b.len()))
            .sum(),
        // A map or list: 3 bytes, plus 1 for each element.
        ("M", Value::Object(map)) => {
            3 + map
                .iter()
                .map(|(k, v)| k.len() + size(v) + 1)
                .sum::<usize>()
        }
        ("L", Value::Array(list)) => 3 + list.iter().map(|v| size(v) + 1).sum::<usize>(),
        _ => 0,
    }
}

/// An item's size: each attribute's name and value.
pub(super) fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + size(value))
        .sum()
}

/// `a = b` as a condition means it: same type and value (values are
/// checked, so numbers are canonical and sets sorted).
pub(super) fn equal(a: &Value, b: &Value) -> bool {
    a == b
}

/// `a < b` and friends: only between two strings (by UTF-8 bytes), two
/// numbers or two binaries (by bytes); `None` otherwise, which makes the
/// comparison false.
pub(super) fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (kind(a), kind(b)) {
        (("S", Value::String(x)), ("S", Value::String(y))) => Some(x.as_bytes().cmp(y.as_bytes())),
        (("N", Value::String(x)), ("N", Value::String(y))) => {
            Some(Number::parse(x)?.cmp(&Number::parse(y)?))
        }
        (("B", Value::String(x)), ("B", Value::String(y))) => {
            Some(bytes(x).ok()?.cmp(&bytes(y).ok()?))
        }
        _ => None,
    }
}

/// `begins_with(a, b)`: two strings or two binaries.
pub(super) fn begins_with(a: &Value, b: &Value) -> bool {
    match (kind(a), kind(b)) {
        (("S", Value::String(x)), ("S", Value::String(y))) => x.starts_with(y.as_str()),
        (("B", Value::String(x)), ("B", Value::String(y))) => match (bytes(x), bytes(y)) {
            (Ok(x), Ok(y)) => x.starts_with(&y),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(text: &str) -> Number {
        Number::parse(text).unwrap()
    }

    #[test]
    fn numbers_are_stored_in_the_services_canonical_form() {
        let canonical = |t: &str| n(t).canonical();
        assert_eq!(canonical("01.50"), "1.5");
        assert_eq!(canonical("-0.0"), "0");
        assert_eq!(canonical("1E+2"), "100");
        assert_eq!(canonical("1.25e-3"), "0.00125");
        assert_eq!(canonical("+1700000000123"), "1700000000123");
        assert_eq!(canonical(".5"), "0.5");
        assert!(Number::parse("1.2.3").is_none());
        assert!(Number::parse("abc").is_none());
        assert!(Number::parse("").is_none());
    }

    #[test]
    fn numbers_compare_by_value_not_by_text() {
        assert!(n("9") < n("10"));
        assert!(n("-10") < n("-9"));
        assert!(n("-1") < n("0"));
        assert!(n("0.001") < n("0.01"));
        assert_eq!(n("1.0").cmp(&n("1")), Ordering::Equal);
        assert!(n("1700000000") < n("1700000000123"));
    }

    #[test]
    fn a_number_out_of_dynamodbs_range_or_precision_is_refused() {
        assert!(number(&"1".repeat(39)).is_err());
        assert!(number(&"1".repeat(38)).is_ok());
        assert!(number("1E126").is_err());
        assert!(number("9.9E125").is_ok());
        assert!(number("1E-131").is_err());
        assert!(number("1E-130").is_ok());
    }

    #[test]
    fn attribute_values_are_checked_like_the_service_checks_them() {
        assert_eq!(checked(&json!({"N": "01"})).unwrap(), json!({"N": "1"}));
        assert_eq!(
            checked(&json!({"M": {"a": {"NS": ["2", "1.0"]}}})).unwrap(),
            json!({"M": {"a": {"NS": ["1", "2"]}}})
        );
        assert!(checked(&json!({})).is_err());
        assert!(checked(&json!({"S": "a", "N": "1"})).is_err());
        assert!(checked(&json!({"NULL": false})).is_err());
        assert!(checked(&json!({"SS": []})).is_err());
        assert!(checked(&json!({"SS": ["a", "a"]})).is_err());
        assert!(checked(&json!({"B": "not base64!"})).is_err());
    }

    #[test]
    fn an_items_size_counts_names_and_values_as_dynamodb_does() {
        let item = checked_item(
            json!({"id": {"S": "abc"}, "n": {"N": "123"}, "m": {"M": {"k": {"BOOL": true}}}})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        // id: 2 + 3; n: 1 + (2 + 1); m: 1 + 3 + (1 + 1 + 1).
        assert_eq!(item_size(&item), 5 + 4 + 7);
    }
}
