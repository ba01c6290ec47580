//! YAML to a tree of nodes that keep their positions, through serde-saphyr with explicit limits.
//!
//! Every scalar, key, sequence and mapping carries the line and column it came from, so that later
//! passes can point at the offending node. Duplicate keys, alias bombs, deep nesting and oversized
//! input stop here with a located error.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};

use crate::diagnostic::{Code, Diagnostic};
use crate::source::{FileId, Span};

/// Input larger than this is refused before parsing.
pub const MAX_INPUT_BYTES: usize = 32 * 1024 * 1024;

/// A position inside the file a tree was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
    pub len: u32,
}

impl Pos {
    pub fn span(self, file: FileId) -> Span {
        Span::new(file, self.line, self.column, self.len)
    }
}

impl From<serde_saphyr::Location> for Pos {
    fn from(location: serde_saphyr::Location) -> Pos {
        Pos {
            line: location.line() as u32,
            column: location.column() as u32,
            len: location.span().len() as u32,
        }
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// What the value is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// Convert to JSON (positions dropped).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.name.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            value: spanned.value,
            pos: spanned.referenced.into(),
        })
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        let spanned = Spanned::<String>::deserialize(deserializer)?;
        Ok(Key {
            name: spanned.value,
            pos: spanned.referenced.into(),
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a yaml value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer is too large"))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// The parser limits: generous for plans of tens of thousands of steps, tight enough that hostile
/// input fails fast with bounded memory.
pub fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_events = 20_000_000;
    budget.max_nodes = 5_000_000;
    budget.max_depth = 64;
    budget.flow_nesting_limit = 64;
    // Plans use few anchors; a handful of aliases that expand to millions of nodes is an attack.
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_recorded_anchor_events = 200_000;
    budget.max_total_scalar_bytes = MAX_INPUT_BYTES;
    budget.max_documents = 1;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.strict_booleans = true;
    options.with_snippet = false;
    options
}

/// Parse one YAML document. An empty file gives a `Null` node.
pub fn parse(file: FileId, text: &str) -> Result<Node, Diagnostic> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(Diagnostic::new(
            Code::YamlSyntax,
            Span::file_start(file),
            format!(
                "file is {:.1} MiB, larger than the {} MiB limit",
                text.len() as f64 / (1024.0 * 1024.0),
                MAX_INPUT_BYTES / (1024 * 1024)
            ),
        )
        .with_help("split the plan into modules"));
    }
    // Deserialising recurses once per nesting level with large frames; the depth limit keeps
    // the recursion bounded, and a thread of its own keeps it off small caller stacks.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("planc-yaml".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, || {
                serde_saphyr::from_str_with_options::<Node>(text, options())
                    .map_err(|error| syntax_diagnostic(file, &error))
            })
            .map_err(|error| {
                Diagnostic::new(
                    Code::YamlSyntax,
                    Span::file_start(file),
                    format!("cannot start the parser: {error}"),
                )
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(Diagnostic::new(
                    Code::YamlSyntax,
                    Span::file_start(file),
                    "the yaml parser failed on this file",
                ))
            })
    })
}

/// Stack of the parsing thread: room for the nesting limit in a debug build, many times over.
const PARSER_STACK_BYTES: usize = 64 * 1024 * 1024;

fn syntax_diagnostic(file: FileId, error: &serde_saphyr::Error) -> Diagnostic {
    let span = error
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Pos::from(l).span(file))
        .unwrap_or_else(|| Span::file_start(file));
    let text = plain_message(&error.to_string());
    let lower = text.to_lowercase();
    if lower.contains("duplicate mapping key") {
        let key = text.split("duplicate mapping key:").nth(1).unwrap_or("");
        let key = key.split(',').next().unwrap_or("").trim();
        return Diagnostic::new(Code::DuplicateKey, span, format!("duplicate key `{key}`"))
            .with_help("each key may appear once in a mapping; remove or rename one of them");
    }
    let diagnostic = Diagnostic::new(Code::YamlSyntax, span, lowercase_first(&text));
    if lower.contains("budget") || lower.contains("alias") || lower.contains("depth") {
        diagnostic.with_help("the plan exceeds a parser limit (nesting depth 64, aliases, size)")
    } else {
        diagnostic
    }
}

/// serde-saphyr's message without its leading "error: line N column M:" and trailing detail.
fn plain_message(message: &str) -> String {
    let mut text = message.lines().next().unwrap_or("").trim();
    text = text.strip_prefix("error:").unwrap_or(text).trim();
    if let Some(rest) = text.strip_prefix("line ")
        && let Some(index) = rest.find(": ")
        && rest[..index].contains("column")
    {
        text = &rest[index + 2..];
    }
    text.trim_end_matches('.').to_string()
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
