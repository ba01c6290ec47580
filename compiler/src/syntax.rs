//! The plan document as a syntax tree: the YAML node tree checked for shape (known fields, required
//! fields, types of the structural fields), with every problem reported and every value kept
//! with its position. Meaning (references, kinds, types of inputs) is checked later.

use planc_schema::plan::{ParamType, TargetKind};

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::source::{FileId, Span};
use crate::yaml::{Key, Node, Pos, Value};

/// A string with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub value: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    Plan,
    Module,
}

/// One parsed plan or module file.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: FileId,
    pub kind: DocumentKind,
    pub kind_pos: Pos,
    pub name: Option<Text>,
    pub description: Option<Text>,
    pub params: Vec<ParamDecl>,
    pub targets: Vec<TargetDecl>,
    pub steps: Vec<StepDecl>,
}

#[derive(Debug, Clone)]
pub struct ParamDecl {
    pub name: Text,
    pub param_type: ParamType,
    pub description: Option<Text>,
    pub default: Option<Node>,
    pub allowed: Option<Vec<Node>>,
    pub pattern: Option<Text>,
    pub target_kind: Option<TargetKind>,
}

#[derive(Debug, Clone)]
pub struct TargetDecl {
    pub id: Text,
    pub kind: TargetKind,
    /// The kind-specific attributes, checked for names here and for values when resolved.
    pub attributes: Vec<(Key, Node)>,
}

#[derive(Debug, Clone)]
pub struct RetryDecl {
    pub attempts: u32,
    pub backoff: Option<Text>,
}

#[derive(Debug, Clone)]
pub struct StepDecl {
    pub id: Text,
    pub description: Option<Text>,
    pub uses: Option<Text>,
    pub module: Option<Text>,
    pub on: Option<Text>,
    pub with: Option<Node>,
    pub needs: Vec<Text>,
    pub for_each: Option<Node>,
    pub when: Option<Text>,
    pub timeout: Option<Text>,
    pub retry: Option<RetryDecl>,
    pub gate: Option<Text>,
    pub allow: Vec<Text>,
    pub pos: Pos,
}

/// Attribute names of each target kind: (required, optional).
pub fn target_attributes(kind: TargetKind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        TargetKind::Kubernetes => (&["context"], &["namespace"]),
        TargetKind::Vault => (
            &["cluster", "url"],
            &[
                "flavour",
                "release",
                "statefulset",
                "container",
                "configmap",
                "config_key",
                "ingress",
                "service",
                "active_service",
                "standby_service",
                "internal_service",
                "selector",
                "status_labels",
                "env_prefix",
                "data_path",
                "port",
                "replicas",
                "reach",
                "address_template",
            ],
        ),
        TargetKind::Azurekeyvault => (
            &["tenant_id", "vault_name", "key_name"],
            &["subscription", "resource_group"],
        ),
        TargetKind::Transit => (&["address", "key_name", "token"], &["mount_path"]),
        TargetKind::Awskms => (&["region", "kms_key_id"], &[]),
        TargetKind::Gcpckms => (&["project", "region", "key_ring", "crypto_key"], &[]),
    }
}

const DOCUMENT_FIELDS: &[&str] = &[
    "version",
    "kind",
    "name",
    "description",
    "params",
    "targets",
    "steps",
];
const PARAM_FIELDS: &[&str] = &[
    "type",
    "description",
    "default",
    "allowed",
    "pattern",
    "target_kind",
];
const STEP_FIELDS: &[&str] = &[
    "id",
    "description",
    "uses",
    "module",
    "on",
    "with",
    "needs",
    "for_each",
    "when",
    "timeout",
    "retry",
    "gate",
    "allow",
];

/// Read a document's shape. Returns `None` only when the root is not a mapping or the version
/// is unusable; otherwise a document with whatever could be read, and diagnostics for the rest.
pub fn read_document(file: FileId, root: &Node, diagnostics: &mut Diagnostics) -> Option<Document> {
    let mut cx = Reader { file, diagnostics };
    if matches!(root.value, Value::Null) {
        cx.error(
            Code::MissingField,
            root.pos,
            "the file is empty".to_string(),
            Some("a plan starts with `version: 1`, `name:` and `steps:`"),
        );
        return None;
    }
    let fields = cx.fields(root, "plan", DOCUMENT_FIELDS)?;
    match fields.get("version") {
        None => {
            cx.missing(root, "version", "plan");
            return None;
        }
        Some(node) => match &node.value {
            Value::Int(v) if u64::try_from(*v) == Ok(planc_schema::PLAN_VERSION) => {}
            Value::Int(v) => {
                cx.error(
                    Code::UnsupportedVersion,
                    node.pos,
                    format!("unsupported plan version {v}"),
                    Some("this planc reads version 1"),
                );
                return None;
            }
            other => {
                cx.error(
                    Code::WrongType,
                    node.pos,
                    format!("`version` must be an integer, found {}", other.describe()),
                    Some("write `version: 1`"),
                );
                return None;
            }
        },
    }
    let (kind, kind_pos) = match fields.get("kind") {
        None => (DocumentKind::Plan, root.pos),
        Some(node) => match node.as_str() {
            Some("plan") => (DocumentKind::Plan, node.pos),
            Some("module") => (DocumentKind::Module, node.pos),
            _ => {
                cx.error(
                    Code::InvalidValue,
                    node.pos,
                    "`kind` must be `plan` or `module`".into(),
                    None,
                );
                (DocumentKind::Plan, node.pos)
            }
        },
    };
    let name = match fields.get("name") {
        Some(node) => cx.identifier(node, "plan name"),
        None => {
            cx.missing(root, "name", "plan");
            None
        }
    };
    let description = fields
        .get("description")
        .and_then(|n| cx.text(n, "description"));
    let params = fields
        .get("params")
        .map(|n| cx.params(n))
        .unwrap_or_default();
    let targets = match fields.get("targets") {
        Some(node) if kind == DocumentKind::Module => {
            cx.error(
                Code::UnknownField,
                node.pos,
                "a module has no `targets`".into(),
                Some("declare a parameter with `type: target` and pass the target when instantiating"),
            );
            Vec::new()
        }
        Some(node) => cx.targets(node),
        None => Vec::new(),
    };
    let steps = match fields.get("steps") {
        Some(node) => cx.steps(node),
        None => {
            cx.missing(root, "steps", "plan");
            Vec::new()
        }
    };
    Some(Document {
        file,
        kind,
        kind_pos,
        name,
        description,
        params,
        targets,
        steps,
    })
}

/// The fields of one mapping, after unknown ones were reported.
pub struct Fields<'a> {
    entries: &'a [(Key, Node)],
}

impl<'a> Fields<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }
}

struct Reader<'d> {
    file: FileId,
    diagnostics: &'d mut Diagnostics,
}

impl Reader<'_> {
    fn span(&self, pos: Pos) -> Span {
        pos.span(self.file)
    }

    fn error(&mut self, code: Code, pos: Pos, message: String, help: Option<&str>) {
        let mut diagnostic = Diagnostic::new(code, self.span(pos), message);
        if let Some(help) = help {
            diagnostic = diagnostic.with_help(help);
        }
        self.diagnostics.push(diagnostic);
    }

    fn missing(&mut self, at: &Node, field: &str, what: &str) {
        self.missing_at(at.pos, field, what);
    }

    fn missing_at(&mut self, pos: Pos, field: &str, what: &str) {
        self.error(
            Code::MissingField,
            pos,
            format!("missing field `{field}` in {what}"),
            None,
        );
    }

    fn fields<'n>(&mut self, node: &'n Node, what: &str, known: &[&str]) -> Option<Fields<'n>> {
        let Some(entries) = node.as_map() else {
            self.error(
                Code::WrongType,
                node.pos,
                format!("{what} must be a mapping, found {}", node.value.describe()),
                None,
            );
            return None;
        };
        for (key, _) in entries {
            if !known.contains(&key.name.as_str()) {
                let help = match crate::suggest::closest(&key.name, known) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("known fields: {}", known.join(", ")),
                };
                self.error(
                    Code::UnknownField,
                    key.pos,
                    format!("unknown field `{}` in {what}", key.name),
                    Some(&help),
                );
            }
        }
        Some(Fields { entries })
    }

    fn text(&mut self, node: &Node, what: &str) -> Option<Text> {
        match &node.value {
            Value::Str(s) => Some(Text {
                value: s.clone(),
                pos: node.pos,
            }),
            other => {
                self.error(
                    Code::WrongType,
                    node.pos,
                    format!("{what} must be a string, found {}", other.describe()),
                    None,
                );
                None
            }
        }
    }

    fn identifier(&mut self, node: &Node, what: &str) -> Option<Text> {
        let text = self.text(node, what)?;
        if !is_identifier(&text.value) {
            self.error(
                Code::InvalidValue,
                text.pos,
                format!("{what} `{}` is not a valid identifier", text.value),
                Some("use lowercase letters, digits, `-` and `_`, starting with a letter"),
            );
        }
        Some(text)
    }

    fn text_list(&mut self, node: &Node, what: &str) -> Vec<Text> {
        match &node.value {
            Value::Seq(items) => items.iter().filter_map(|n| self.text(n, what)).collect(),
            Value::Str(_) => self.text(node, what).into_iter().collect(),
            other => {
                self.error(
                    Code::WrongType,
                    node.pos,
                    format!(
                        "{what} must be a list of strings, found {}",
                        other.describe()
                    ),
                    None,
                );
                Vec::new()
            }
        }
    }

    fn params(&mut self, node: &Node) -> Vec<ParamDecl> {
        let Some(entries) = self.mapping(node, "`params`") else {
            return Vec::new();
        };
        let mut params = Vec::new();
        for (key, spec) in entries {
            if !is_identifier(&key.name) {
                self.error(
                    Code::InvalidValue,
                    key.pos,
                    format!("parameter name `{}` is not a valid identifier", key.name),
                    Some("use lowercase letters, digits and `_`, starting with a letter"),
                );
            }
            let what = format!("parameter `{}`", key.name);
            let Some(fields) = self.fields(spec, &what, PARAM_FIELDS) else {
                continue;
            };
            let param_type = match fields.get("type") {
                None => {
                    self.missing_at(key.pos, "type", &what);
                    continue;
                }
                Some(t) => match t.as_str().and_then(param_type_from_name) {
                    Some(param_type) => param_type,
                    None => {
                        self.error(
                            Code::InvalidValue,
                            t.pos,
                            format!("unknown parameter type for {what}"),
                            Some("types: string, integer, boolean, list, map, secret, target"),
                        );
                        continue;
                    }
                },
            };
            let target_kind = fields.get("target_kind").and_then(|n| self.target_kind(n));
            let allowed = fields.get("allowed").and_then(|n| match &n.value {
                Value::Seq(items) => Some(items.clone()),
                other => {
                    self.error(
                        Code::WrongType,
                        n.pos,
                        format!("`allowed` must be a list, found {}", other.describe()),
                        None,
                    );
                    None
                }
            });
            params.push(ParamDecl {
                name: Text {
                    value: key.name.clone(),
                    pos: key.pos,
                },
                param_type,
                description: fields
                    .get("description")
                    .and_then(|n| self.text(n, "description")),
                default: fields.get("default").cloned(),
                allowed,
                pattern: fields
                    .get("pattern")
                    .and_then(|n| self.text(n, "`pattern`")),
                target_kind,
            });
        }
        params
    }

    fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Key, Node)]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            Value::Null => Some(&[]),
            other => {
                self.error(
                    Code::WrongType,
                    node.pos,
                    format!("{what} must be a mapping, found {}", other.describe()),
                    None,
                );
                None
            }
        }
    }

    fn target_kind(&mut self, node: &Node) -> Option<TargetKind> {
        let kind = node.as_str().and_then(TargetKind::from_name);
        if kind.is_none() {
            self.error(
                Code::InvalidValue,
                node.pos,
                "unknown target kind".into(),
                Some("kinds: kubernetes, vault, azurekeyvault, transit, awskms, gcpckms"),
            );
        }
        kind
    }

    fn targets(&mut self, node: &Node) -> Vec<TargetDecl> {
        let Some(entries) = self.mapping(node, "`targets`") else {
            return Vec::new();
        };
        let mut targets = Vec::new();
        for (key, spec) in entries {
            if !is_identifier(&key.name) {
                self.error(
                    Code::InvalidValue,
                    key.pos,
                    format!("target id `{}` is not a valid identifier", key.name),
                    Some("use lowercase letters, digits, `-` and `_`, starting with a letter"),
                );
            }
            let what = format!("target `{}`", key.name);
            let Some(map) = self.mapping(spec, &what) else {
                continue;
            };
            let Some(kind_node) = spec.get("kind") else {
                self.missing_at(key.pos, "kind", &what);
                continue;
            };
            let Some(kind) = self.target_kind(kind_node) else {
                continue;
            };
            let (required, optional) = target_attributes(kind);
            let mut known: Vec<&str> = vec!["kind"];
            known.extend_from_slice(required);
            known.extend_from_slice(optional);
            let _ = self.fields(spec, &format!("{what} of kind `{}`", kind.name()), &known);
            for field in required {
                if spec.get(field).is_none() {
                    self.missing_at(key.pos, field, &what);
                }
            }
            targets.push(TargetDecl {
                id: Text {
                    value: key.name.clone(),
                    pos: key.pos,
                },
                kind,
                attributes: map
                    .iter()
                    .filter(|(k, _)| k.name != "kind")
                    .cloned()
                    .collect(),
            });
        }
        targets
    }

    fn steps(&mut self, node: &Node) -> Vec<StepDecl> {
        let items = match &node.value {
            Value::Seq(items) => items,
            other => {
                self.error(
                    Code::WrongType,
                    node.pos,
                    format!("`steps` must be a list, found {}", other.describe()),
                    None,
                );
                return Vec::new();
            }
        };
        items.iter().filter_map(|item| self.step(item)).collect()
    }

    fn step(&mut self, node: &Node) -> Option<StepDecl> {
        let fields = self.fields(node, "step", STEP_FIELDS)?;
        let id = match fields.get("id") {
            Some(n) => self.identifier(n, "step id")?,
            None => {
                self.missing(node, "id", "step");
                return None;
            }
        };
        let what = format!("step `{}`", id.value);
        let uses = fields.get("uses").and_then(|n| self.text(n, "`uses`"));
        let module = fields.get("module").and_then(|n| self.text(n, "`module`"));
        match (&uses, &module) {
            (None, None) => self.error(
                Code::MissingField,
                id.pos,
                format!("{what} has neither `uses` nor `module`"),
                Some("name an action with `uses:` or a module file with `module:`"),
            ),
            (Some(_), Some(m)) => self.error(
                Code::InvalidValue,
                m.pos,
                format!("{what} has both `uses` and `module`"),
                Some("a step runs one action or instantiates one module"),
            ),
            _ => {}
        }
        let retry = fields.get("retry").and_then(|n| self.retry(n));
        Some(StepDecl {
            description: fields
                .get("description")
                .and_then(|n| self.text(n, "description")),
            uses,
            module,
            on: fields.get("on").and_then(|n| self.text(n, "`on`")),
            with: fields.get("with").cloned(),
            needs: fields
                .get("needs")
                .map(|n| self.text_list(n, "`needs`"))
                .unwrap_or_default(),
            for_each: fields.get("for_each").cloned(),
            when: fields.get("when").and_then(|n| self.text(n, "`when`")),
            timeout: fields.get("timeout").and_then(|n| self.duration(n)),
            retry,
            gate: fields.get("gate").and_then(|n| self.text(n, "`gate`")),
            allow: fields
                .get("allow")
                .map(|n| self.text_list(n, "`allow`"))
                .unwrap_or_default(),
            pos: node.pos,
            id,
        })
    }

    fn duration(&mut self, node: &Node) -> Option<Text> {
        let text = self.text(node, "a duration")?;
        if parse_duration(&text.value).is_none() {
            self.error(
                Code::InvalidValue,
                text.pos,
                format!("`{}` is not a duration", text.value),
                Some("write a number with a unit: `90s`, `5m`, `1h`"),
            );
            return None;
        }
        Some(text)
    }

    fn retry(&mut self, node: &Node) -> Option<RetryDecl> {
        if let Value::Int(attempts) = node.value {
            return self.attempts(attempts, node.pos).map(|attempts| RetryDecl {
                attempts,
                backoff: None,
            });
        }
        let fields = self.fields(node, "`retry`", &["attempts", "backoff"])?;
        let attempts = match fields.get("attempts") {
            Some(n) => match n.value {
                Value::Int(a) => self.attempts(a, n.pos)?,
                ref other => {
                    self.error(
                        Code::WrongType,
                        n.pos,
                        format!("`attempts` must be an integer, found {}", other.describe()),
                        None,
                    );
                    return None;
                }
            },
            None => {
                self.missing(node, "attempts", "`retry`");
                return None;
            }
        };
        let backoff = fields.get("backoff").and_then(|n| self.duration(n));
        Some(RetryDecl { attempts, backoff })
    }

    fn attempts(&mut self, attempts: i64, pos: Pos) -> Option<u32> {
        match u32::try_from(attempts) {
            Ok(a) if (1..=100).contains(&a) => Some(a),
            _ => {
                self.error(
                    Code::InvalidValue,
                    pos,
                    format!("retry attempts must be between 1 and 100, found {attempts}"),
                    None,
                );
                None
            }
        }
    }
}

fn param_type_from_name(name: &str) -> Option<ParamType> {
    Some(match name {
        "string" => ParamType::String,
        "integer" => ParamType::Integer,
        "boolean" => ParamType::Boolean,
        "list" => ParamType::List,
        "map" => ParamType::Map,
        "secret" => ParamType::Secret,
        "target" => ParamType::Target,
        _ => return None,
    })
}

pub fn param_type_name(param_type: ParamType) -> &'static str {
    match param_type {
        ParamType::String => "string",
        ParamType::Integer => "integer",
        ParamType::Boolean => "boolean",
        ParamType::List => "list",
        ParamType::Map => "map",
        ParamType::Secret => "secret",
        ParamType::Target => "target",
    }
}

/// Lowercase ASCII letter first, then letters, digits, `-` or `_`.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_'))
        && name.len() <= 63
}

/// Seconds in a duration like `90s`, `5m`, `1h30m`.
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return None,
        };
        let value: u64 = number.parse().ok()?;
        total = total.checked_add(value.checked_mul(unit)?)?;
        number.clear();
        any = true;
    }
    (any && number.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
