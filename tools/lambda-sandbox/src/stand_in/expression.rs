//! DynamoDB's condition, update and projection expressions, the parts the
//! callers send: comparisons, `BETWEEN`, `IN`, `attribute_exists`,
//! `attribute_not_exists`, `begins_with`, `AND`/`OR`/`NOT` and
//! parentheses; `SET name = operand` and `REMOVE name`; top-level
//! attribute names (or `#aliases`). Anything else is refused naming what
//! the stand-in lacks, never guessed at.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::value::{self, Item};
use super::Fault;

static RESERVED: LazyLock<BTreeSet<&'static str>> = LazyLock::new(|| {
    include_str!("reserved_words.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Alias(String),
    Placeholder(String),
    Symbol(&'static str),
}

const SYMBOLS: [&str; 13] = [
    "<>", "<=", ">=", "=", "<", ">", "(", ")", ",", ".", "[", "]", "+",
];

fn tokens(text: &str, which: &str) -> Result<Vec<Token>, Fault> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            return Ok(out);
        };
        if let Some(symbol) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            out.push(Token::Symbol(symbol));
            rest = &rest[symbol.len()..];
            continue;
        }
        if first == '-' {
            out.push(Token::Symbol("-"));
            rest = &rest[1..];
            continue;
        }
        let word_end = |from: usize| {
            rest[from..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(rest.len(), |at| at + from)
        };
        let (token, end) = match first {
            '#' => {
                let end = word_end(1);
                (Token::Alias(rest[..end].to_owned()), end)
            }
            ':' => {
                let end = word_end(1);
                (Token::Placeholder(rest[..end].to_owned()), end)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let end = word_end(0);
                (Token::Name(rest[..end].to_owned()), end)
            }
            _ => {
                return Err(Fault::validation(format!(
                    "Invalid {which}: Syntax error; token: \"{first}\", near: \"{}\"",
                    rest.chars().take(12).collect::<String>()
                )))
            }
        };
        if end <= 1 && first != '_' && !first.is_ascii_alphabetic() {
            return Err(Fault::validation(format!(
                "Invalid {which}: Syntax error; token: \"{first}\""
            )));
        }
        out.push(token);
        rest = &rest[end..];
    }
}

/// The `ExpressionAttributeNames` and `ExpressionAttributeValues` of one
/// request, and which of them its expressions used: DynamoDB refuses a
/// request that defines one it doesn't use.
pub(super) struct Bindings {
    names: Map<String, Value>,
    values: Item,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

impl Bindings {
    pub(super) fn new(request: &Value) -> Result<Self, Fault> {
        let names = request
            .get("ExpressionAttributeNames")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let values = match request
            .get("ExpressionAttributeValues")
            .and_then(Value::as_object)
        {
            Some(values) => value::checked_item(values)?,
            None => Item::new(),
        };
        Ok(Self {
            names,
            values,
            used_names: BTreeSet::new(),
            used_values: BTreeSet::new(),
        })
    }

    /// Refuses names and values defined but unused, as DynamoDB does.
    pub(super) fn all_used(&self) -> Result<(), Fault> {
        let unused = |defined: &mut dyn Iterator<Item = &String>, used: &BTreeSet<String>| {
            defined
                .filter(|k| !used.contains(*k))
                .cloned()
                .collect::<Vec<_>>()
        };
        let names = unused(&mut self.names.keys(), &self.used_names);
        if !names.is_empty() {
            return Err(Fault::validation(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                names.join(", ")
            )));
        }
        let values = unused(&mut self.values.keys(), &self.used_values);
        if !values.is_empty() {
            return Err(Fault::validation(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                values.join(", ")
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Operand {
    Path(String),
    Value(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Condition {
    Compare(Operand, Comparator, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    Exists(String),
    NotExists(String),
    BeginsWith(Operand, Operand),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    which: &'static str,
    bindings: &'a mut Bindings,
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Name(n)) if n.eq_ignore_ascii_case(word))
}

impl<'a> Parser<'a> {
    fn new(text: &str, which: &'static str, bindings: &'a mut Bindings) -> Result<Self, Fault> {
        if text.trim().is_empty() {
            return Err(Fault::validation(format!(
                "Invalid {which}: The expression can not be empty;"
            )));
        }
        Ok(Self {
            tokens: tokens(text, which)?,
            at: 0,
            which,
            bindings,
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn syntax(&self, near: Option<&Token>) -> Fault {
        let token = match near {
            Some(Token::Name(s) | Token::Alias(s) | Token::Placeholder(s)) => s.clone(),
            Some(Token::Symbol(s)) => (*s).to_owned(),
            None => "<EOF>".into(),
        };
        Fault::validation(format!(
            "Invalid {}: Syntax error; token: \"{token}\"",
            self.which
        ))
    }

    fn expect(&mut self, symbol: &str) -> Result<(), Fault> {
        match self.next() {
            Some(Token::Symbol(s)) if s == symbol => Ok(()),
            other => Err(self.syntax(other.as_ref())),
        }
    }

    fn at_symbol(&self, symbol: &str) -> bool {
        matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol)
    }

    fn done(&self) -> Result<(), Fault> {
        match self.peek() {
            None => Ok(()),
            other => Err(self.syntax(other)),
        }
    }

    fn unsupported(&self, what: impl std::fmt::Display) -> Fault {
        Fault::unsupported(format!("{} with {what}", self.which))
    }

    /// A top-level attribute name, from a bare name or an `#alias`.
    fn path(&mut self) -> Result<String, Fault> {
        let name = match self.next() {
            Some(Token::Alias(alias)) => {
                let name = self
                    .bindings
                    .names
                    .get(&alias)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        Fault::validation(format!(
                            "Invalid {}: An expression attribute name used in the document path is not defined; attribute name: {alias}",
                            self.which
                        ))
                    })?;
                self.bindings.used_names.insert(alias);
                name
            }
            Some(Token::Name(name)) => {
                if RESERVED.contains(name.to_ascii_uppercase().as_str()) {
                    return Err(Fault::validation(format!(
                        "Invalid {}: Attribute name is a reserved keyword; reserved keyword: {name}",
                        self.which
                    )));
                }
                name
            }
            other => return Err(self.syntax(other.as_ref())),
        };
        if self.at_symbol(".") || self.at_symbol("[") {
            return Err(self.unsupported(format!("a nested document path under {name}")));
        }
        Ok(name)
    }

    fn operand(&mut self) -> Result<Operand, Fault> {
        match self.peek() {
            Some(Token::Placeholder(_)) => {
                let Some(Token::Placeholder(placeholder)) = self.next() else {
                    unreachable!("peeked a placeholder")
                };
                let value = self
                    .bindings
                    .values
                    .get(&placeholder)
                    .cloned()
                    .ok_or_else(|| {
                        Fault::validation(format!(
                            "Invalid {}: An expression attribute value used in expression is not defined; attribute value: {placeholder}",
                            self.which
                        ))
                    })?;
                self.bindings.used_values.insert(placeholder);
                Ok(Operand::Value(value))
            }
            Some(Token::Name(name))
                if matches!(self.tokens.get(self.at + 1), Some(Token::Symbol("("))) =>
            {
                Err(self.unsupported(format!("the function {name} as an operand")))
            }
            _ => Ok(Operand::Path(self.path()?)),
        }
    }

    fn or(&mut self) -> Result<Condition, Fault> {
        let mut left = self.and()?;
        while keyword(self.peek(), "OR") {
            self.next();
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, Fault> {
        let mut left = self.not()?;
        while keyword(self.peek(), "AND") {
            self.next();
            left = Condition::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, Fault> {
        if keyword(self.peek(), "NOT") {
            self.next();
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Condition, Fault> {
        if self.at_symbol("(") {
            self.next();
            let inner = self.or()?;
            self.expect(")")?;
            return Ok(inner);
        }
        if let (Some(Token::Name(function)), Some(Token::Symbol("("))) =
            (self.peek().cloned(), self.tokens.get(self.at + 1))
        {
            self.at += 2;
            let condition = match function.as_str() {
                "attribute_exists" => Condition::Exists(self.path()?),
                "attribute_not_exists" => Condition::NotExists(self.path()?),
                "begins_with" => {
                    let subject = self.operand()?;
                    self.expect(",")?;
                    Condition::BeginsWith(subject, self.operand()?)
                }
                other => return Err(self.unsupported(format!("the function {other}"))),
            };
            self.expect(")")?;
            return Ok(condition);
        }
        let left = self.operand()?;
        if keyword(self.peek(), "BETWEEN") {
            self.next();
            let low = self.operand()?;
            if !keyword(self.peek(), "AND") {
                return Err(self.syntax(self.peek()));
            }
            self.next();
            return Ok(Condition::Between(left, low, self.operand()?));
        }
        if keyword(self.peek(), "IN") {
            self.next();
            self.expect("(")?;
            let mut list = vec![self.operand()?];
            while self.at_symbol(",") {
                self.next();
                list.push(self.operand()?);
            }
            self.expect(")")?;
            return Ok(Condition::In(left, list));
        }
        let comparator = match self.next() {
            Some(Token::Symbol("=")) => Comparator::Eq,
            Some(Token::Symbol("<>")) => Comparator::Ne,
            Some(Token::Symbol("<")) => Comparator::Lt,
            Some(Token::Symbol("<=")) => Comparator::Le,
            Some(Token::Symbol(">")) => Comparator::Gt,
            Some(Token::Symbol(">=")) => Comparator::Ge,
            other => return Err(self.syntax(other.as_ref())),
        };
        Ok(Condition::Compare(left, comparator, self.operand()?))
    }
}

/// Parses a `ConditionExpression`, marking the names and values it uses.
pub(super) fn condition(text: &str, bindings: &mut Bindings) -> Result<Condition, Fault> {
    let mut parser = Parser::new(text, "ConditionExpression", bindings)?;
    let condition = parser.or()?;
    parser.done()?;
    Ok(condition)
}

fn resolve<'v>(operand: &'v Operand, item: Option<&'v Item>) -> Option<&'v Value> {
    match operand {
        Operand::Value(v) => Some(v),
        Operand::Path(name) => item?.get(name),
    }
}

impl Condition {
    /// Whether the condition holds on `item` (`None`: no item with that key).
    pub(super) fn holds(&self, item: Option<&Item>) -> bool {
        let has = |name: &String| item.is_some_and(|i| i.contains_key(name));
        match self {
            Condition::Exists(name) => has(name),
            Condition::NotExists(name) => !has(name),
            Condition::And(a, b) => a.holds(item) && b.holds(item),
            Condition::Or(a, b) => a.holds(item) || b.holds(item),
            Condition::Not(a) => !a.holds(item),
            Condition::BeginsWith(a, b) => match (resolve(a, item), resolve(b, item)) {
                (Some(a), Some(b)) => value::begins_with(a, b),
                _ => false,
            },
            Condition::In(a, list) => resolve(a, item).is_some_and(|a| {
                list.iter()
                    .filter_map(|o| resolve(o, item))
                    .any(|b| value::equal(a, b))
            }),
            Condition::Between(a, low, high) => {
                match (resolve(a, item), resolve(low, item), resolve(high, item)) {
                    (Some(a), Some(low), Some(high)) => {
                        value::order(a, low).is_some_and(|o| o.is_ge())
                            && value::order(a, high).is_some_and(|o| o.is_le())
                    }
                    _ => false,
                }
            }
            Condition::Compare(a, comparator, b) => {
                let (a, b) = (resolve(a, item), resolve(b, item));
                match comparator {
                    Comparator::Eq => matches!((a, b), (Some(a), Some(b)) if value::equal(a, b)),
                    // A missing attribute is not equal to anything.
                    Comparator::Ne => !matches!((a, b), (Some(a), Some(b)) if value::equal(a, b)),
                    ordered => {
                        let Some(order) = a.zip(b).and_then(|(a, b)| value::order(a, b)) else {
                            return false;
                        };
                        match ordered {
                            Comparator::Lt => order.is_lt(),
                            Comparator::Le => order.is_le(),
                            Comparator::Gt => order.is_gt(),
                            _ => order.is_ge(),
                        }
                    }
                }
            }
        }
    }
}

/// A parsed `UpdateExpression`: the attributes `SET` (to a value or another
/// attribute's value) and those `REMOVE`d.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Update {
    set: Vec<(String, Operand)>,
    remove: Vec<String>,
}

/// Parses an `UpdateExpression`, marking the names and values it uses.
pub(super) fn update(text: &str, bindings: &mut Bindings) -> Result<Update, Fault> {
    let mut parser = Parser::new(text, "UpdateExpression", bindings)?;
    let mut update = Update {
        set: Vec::new(),
        remove: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    while let Some(token) = parser.next() {
        let section = match &token {
            Token::Name(word) => word.to_ascii_uppercase(),
            _ => return Err(parser.syntax(Some(&token))),
        };
        if !seen.insert(section.clone()) {
            return Err(Fault::validation(format!(
                "Invalid UpdateExpression: The \"{section}\" section can only be used once in an update expression;"
            )));
        }
        loop {
            match section.as_str() {
                "SET" => {
                    let name = parser.path()?;
                    parser.expect("=")?;
                    let operand = parser.operand()?;
                    if parser.at_symbol("+") || parser.at_symbol("-") {
                        return Err(parser.unsupported("arithmetic in SET"));
                    }
                    update.set.push((name, operand));
                }
                "REMOVE" => update.remove.push(parser.path()?),
                "ADD" | "DELETE" => {
                    return Err(parser.unsupported(format!("its {section} section")))
                }
                _ => return Err(parser.syntax(Some(&token))),
            }
            if !parser.at_symbol(",") {
                break;
            }
            parser.next();
        }
    }
    let mut paths = BTreeSet::new();
    for path in update
        .set
        .iter()
        .map(|(name, _)| name)
        .chain(&update.remove)
    {
        if !paths.insert(path) {
            return Err(Fault::validation(format!(
                "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [{path}], path two: [{path}]"
            )));
        }
    }
    Ok(update)
}

impl Update {
    /// Every attribute it writes or removes.
    pub(super) fn paths(&self) -> impl Iterator<Item = &String> {
        self.set.iter().map(|(name, _)| name).chain(&self.remove)
    }

    /// `item` with the update applied; the operands read `item` as it was.
    pub(super) fn apply(&self, item: &Item) -> Result<Item, Fault> {
        let mut next = item.clone();
        for (name, operand) in &self.set {
            let value = resolve(operand, Some(item)).cloned().ok_or_else(|| {
                Fault::validation(
                    "The provided expression refers to an attribute that does not exist in the item",
                )
            })?;
            next.insert(name.clone(), value);
        }
        for name in &self.remove {
            next.remove(name);
        }
        Ok(next)
    }
}

/// Parses a `ProjectionExpression`: the top-level attributes to return.
pub(super) fn projection(text: &str, bindings: &mut Bindings) -> Result<Vec<String>, Fault> {
    let mut parser = Parser::new(text, "ProjectionExpression", bindings)?;
    let mut names = vec![parser.path()?];
    while parser.at_symbol(",") {
        parser.next();
        names.push(parser.path()?);
    }
    parser.done()?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bindings(names: Value, values: Value) -> Bindings {
        Bindings::new(&json!({
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }))
        .unwrap()
    }

    fn item(value: Value) -> Item {
        value::checked_item(value.as_object().unwrap()).unwrap()
    }

    /// Powertools' idempotency condition (DynamoDBPersistenceLayer._put_record, 3.x).
    const POWERTOOLS: &str = "attribute_not_exists(#id) OR #expiry < :now OR (#status = :inprogress AND attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_in_millis)";

    fn powertools() -> (Condition, Bindings) {
        let mut b = bindings(
            json!({"#id": "id", "#expiry": "expiration", "#in_progress_expiry": "in_progress_expiration", "#status": "status"}),
            json!({":now": {"N": "1000"}, ":now_in_millis": {"N": "1000000"}, ":inprogress": {"S": "INPROGRESS"}}),
        );
        let c = condition(POWERTOOLS, &mut b).unwrap();
        (c, b)
    }

    #[test]
    fn powertools_condition_holds_for_a_new_key_an_expired_record_or_a_stale_in_progress_one() {
        let (c, b) = powertools();
        b.all_used().unwrap();
        assert!(c.holds(None));
        let record = |expiry: &str, status: &str, in_progress: Option<&str>| {
            let mut i = item(
                json!({"id": {"S": "k"}, "expiration": {"N": expiry}, "status": {"S": status}}),
            );
            if let Some(ms) = in_progress {
                i.insert("in_progress_expiration".into(), json!({"N": ms}));
            }
            i
        };
        assert!(c.holds(Some(&record("999", "COMPLETED", None))), "expired");
        assert!(!c.holds(Some(&record("2000", "COMPLETED", None))), "live");
        assert!(
            c.holds(Some(&record("2000", "INPROGRESS", Some("999999")))),
            "in progress past its expiry"
        );
        assert!(
            !c.holds(Some(&record("2000", "INPROGRESS", Some("1000001")))),
            "in progress, still running"
        );
        assert!(
            !c.holds(Some(&record("2000", "INPROGRESS", None))),
            "in progress without an in-progress expiry"
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let mut b = bindings(json!({}), json!({":a": {"S": "a"}}));
        // a OR (b AND c), not (a OR b) AND c.
        let c = condition("x = :a OR y = :a AND z = :a", &mut b).unwrap();
        assert!(c.holds(Some(&item(json!({"x": {"S": "a"}})))));
        assert!(!c.holds(Some(&item(json!({"y": {"S": "a"}})))));
    }

    #[test]
    fn a_comparison_with_a_missing_attribute_or_another_type_is_false_but_not_equal_holds() {
        let mut b = bindings(json!({}), json!({":n": {"N": "5"}, ":s": {"S": "5"}}));
        let i = item(json!({"x": {"N": "5.0"}}));
        assert!(condition("x = :n", &mut b).unwrap().holds(Some(&i)));
        assert!(!condition("x = :s", &mut b).unwrap().holds(Some(&i)));
        assert!(!condition("x < :s", &mut b).unwrap().holds(Some(&i)));
        assert!(!condition("y < :n", &mut b).unwrap().holds(Some(&i)));
        assert!(condition("y <> :n", &mut b).unwrap().holds(Some(&i)));
        assert!(condition("NOT y = :n", &mut b).unwrap().holds(Some(&i)));
        assert!(condition("x BETWEEN :n AND :n", &mut b)
            .unwrap()
            .holds(Some(&i)));
        assert!(condition("x IN (:s, :n)", &mut b).unwrap().holds(Some(&i)));
    }

    #[test]
    fn reserved_words_undefined_placeholders_and_unused_bindings_are_refused() {
        let mut b = bindings(json!({"#unused": "u"}), json!({":v": {"S": "a"}}));
        let refused = |r: Result<Condition, Fault>| r.unwrap_err().message;
        assert!(refused(condition("status = :v", &mut b)).contains("reserved keyword: status"));
        assert!(refused(condition("x = :nope", &mut b)).contains(":nope"));
        assert!(refused(condition("#nope = :v", &mut b)).contains("#nope"));
        condition("x = :v", &mut b).unwrap();
        assert!(b.all_used().unwrap_err().message.contains("#unused"));
    }

    #[test]
    fn what_the_stand_in_does_not_implement_is_refused_by_name() {
        let mut b = bindings(json!({}), json!({":v": {"N": "1"}}));
        let fault = condition("size(x) > :v", &mut b).unwrap_err();
        assert!(fault.unsupported && fault.message.contains("the function size"));
        let fault = condition("a.b = :v", &mut b).unwrap_err();
        assert!(fault.unsupported && fault.message.contains("nested document path"));
        let fault = update("SET x = x + :v", &mut b).unwrap_err();
        assert!(fault.unsupported && fault.message.contains("arithmetic"));
        let fault = update("ADD x :v", &mut b).unwrap_err();
        assert!(fault.unsupported && fault.message.contains("ADD"));
    }

    #[test]
    fn set_and_remove_apply_to_the_item_as_it_was() {
        let mut b = bindings(
            json!({"#s": "status", "#d": "data"}),
            json!({":s": {"S": "COMPLETED"}, ":d": {"S": "{}"}}),
        );
        let u = update("SET #d = :d, #s = :s, a_copy = origin REMOVE gone", &mut b).unwrap();
        b.all_used().unwrap();
        let before = item(json!({"origin": {"N": "1"}, "gone": {"BOOL": true}}));
        assert_eq!(
            Value::Object(u.apply(&before).unwrap()),
            json!({"origin": {"N": "1"}, "a_copy": {"N": "1"}, "data": {"S": "{}"}, "status": {"S": "COMPLETED"}})
        );
        assert!(
            update("SET a = :s, a = :d", &mut b).is_err(),
            "overlapping paths"
        );
    }
}
