//! The payload parsers over JSON trees built from the field names and values
//! they look for (so the fuzzer reaches past "missing field" quickly):
//! timestamps of every shape, event and trigger names, card fields at any
//! depth, ids as strings and numbers.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};
use vendors::booking::BookingFamily;
use vendors::vinesos::VinesOsEvent;

const FIELDS: &[&str] = &[
    "orderInfo",
    "uuid",
    "updated_date",
    "gift_reward_data",
    "items",
    "payments",
    "history",
    "id",
    "instock",
    "type",
    "event",
    "ping",
    "barcode",
    "operation",
    "object",
    "date",
    "notification",
    "data",
    "trigger",
    "occurred_at",
    "when",
    "cc_last_name",
    "card_type",
    "last_4_cc_digits",
    "card_number",
    "cvv",
    "transaction_data",
    "points",
    "name",
];

const WORDS: &[&str] = &[
    "menu.updated",
    "pong",
    "product",
    "ingredient",
    "ORDER",
    "order",
    "PUTAWAY",
    "CREATE",
    "update",
    "UPDATE",
    "Amendment",
    "Removal",
    "Cancellation",
    "On Check-in",
    "check in",
    "2016-04-13T10:29:19",
    "2021-12-28T21:05:13.977077",
    "2016-04-13T17:29:15+00:00",
    "2026-11-24T10:00:00Z",
    "2026-11-24 10:00:00",
    "{\"id\":15,\"total_points\":126}",
    "{",
    "",
    " ",
    "evt_1",
    "u-1",
    "a b",
    "x:y",
    "\u{e9}",
    "\u{0}",
];

#[derive(Arbitrary, Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Word(u8),
    Text(String),
    Timestamp(Stamp),
    Array(Vec<Node>),
    Object(Vec<(Key, Node)>),
}

#[derive(Arbitrary, Debug)]
enum Key {
    Known(u8),
    Free(String),
}

/// A timestamp with every part free, so out-of-range and odd shapes occur.
#[derive(Arbitrary, Debug)]
struct Stamp {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    fraction: Option<u32>,
    offset: Option<(bool, u8, u8)>,
    zulu: bool,
    space: bool,
}

impl Stamp {
    fn render(&self) -> String {
        let mut s = format!(
            "{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            if self.space { ' ' } else { 'T' },
            self.hour,
            self.minute,
            self.second
        );
        if let Some(f) = self.fraction {
            s.push_str(&format!(".{f}"));
        }
        match (self.offset, self.zulu) {
            (Some((neg, h, m)), _) => {
                s.push_str(&format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' }))
            }
            (None, true) => s.push('Z'),
            (None, false) => {}
        }
        s
    }
}

fn words() -> Vec<String> {
    let mut all: Vec<String> = WORDS.iter().map(|w| w.to_string()).collect();
    for family in BookingFamily::ALL {
        all.extend([family.name(), family.slug(), family.entity().kind().as_str()].map(str::to_owned));
        all.extend(family.triggers().iter().map(|t| t.to_string()));
    }
    all.extend(VinesOsEvent::ALL.iter().map(|e| e.name().to_owned()));
    all
}

fn build(node: &Node, words: &[String], depth: usize) -> Value {
    match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::from(*i),
        Node::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Node::Word(i) => Value::String(words[*i as usize % words.len()].clone()),
        Node::Text(s) => Value::String(s.clone()),
        Node::Timestamp(stamp) => Value::String(stamp.render()),
        Node::Array(_) | Node::Object(_) if depth > 24 => Value::Null,
        Node::Array(items) => {
            Value::Array(items.iter().map(|n| build(n, words, depth + 1)).collect())
        }
        Node::Object(fields) => {
            let mut map = Map::new();
            for (key, value) in fields {
                let key = match key {
                    Key::Known(i) => FIELDS[*i as usize % FIELDS.len()].to_owned(),
                    Key::Free(s) => s.clone(),
                };
                map.insert(key, build(value, words, depth + 1));
            }
            Value::Object(map)
        }
    }
}

fuzz_target!(|root: Node| {
    let body = build(&root, &words(), 0);
    let raw = serde_json::to_vec(&body).expect("a Value serialises");
    shared_fuzz::check_all_kinds(&raw, &body);
    // The same body pretty-printed means the same (business keys ignore formatting).
    let pretty = serde_json::to_vec_pretty(&body).expect("a Value serialises");
    if let Ok(reparsed) = serde_json::from_slice::<Value>(&pretty) {
        if reparsed == body {
            shared_fuzz::check_whitespace_insensitive(&pretty, &reparsed);
        }
    }
});
