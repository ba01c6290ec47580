//! Edits of the `seal` blocks of a Vault configuration (HCL): point a block at another key,
//! disable a block and add a new one beside it, remove the disabled block.
//!
//! hcl-edit locates blocks and attributes by their byte spans and the edit splices new text into
//! the original, so everything it does not touch (comments, alignment, Helm placeholders such as
//! `POD_IP`, CRLF line endings) stays byte for byte. Every result is then checked with hcl-rs
//! against Vault's seal rules before it is returned.

use std::fmt;
use std::ops::Range;

use hcl::edit::Span as _;
use hcl::edit::structure::{Block, Body};

/// Which seal block an edit addresses: its type label and, when two blocks share it, its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSelector {
    pub seal_type: String,
    pub name: Option<String>,
}

impl fmt::Display for SealSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seal \"{}\"", self.seal_type)?;
        if let Some(name) = &self.name {
            write!(f, " named \"{name}\"")?;
        }
        Ok(())
    }
}

/// One change to the seal configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealEdit {
    /// Set these attributes in the selected block (replacing values in place, appending the
    /// missing ones); leave the others.
    PointAtKey {
        selector: SealSelector,
        attributes: Vec<(String, String)>,
    },
    /// Add `disabled = "true"` to the selected block and a new block right after it.
    DisableAndAdd {
        selector: SealSelector,
        new_type: String,
        new_name: Option<String>,
        attributes: Vec<(String, String)>,
    },
    /// Remove the block marked disabled (narrowed by the selector when given).
    RemoveDisabled { selector: Option<SealSelector> },
}

/// Why an edit cannot be made. The message names the block it looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealEditError(pub String);

impl fmt::Display for SealEditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Apply one edit and check the result against the seal rules.
pub fn apply(config: &str, edit: &SealEdit) -> Result<String, SealEditError> {
    let body = parse(config)?;
    let layout = Layout::of(config);
    let edited = match edit {
        SealEdit::PointAtKey {
            selector,
            attributes,
        } => {
            let block = select(&body, |b| matches(b, selector), &selector.to_string())?;
            set_attributes(config, block, attributes, &layout)?
        }
        SealEdit::DisableAndAdd {
            selector,
            new_type,
            new_name,
            attributes,
        } => {
            let block = select(&body, |b| matches(b, selector), &selector.to_string())?;
            if is_disabled(block) {
                return Err(SealEditError(format!("{selector} is already disabled")));
            }
            let mut new_attributes = Vec::new();
            if let Some(name) = new_name.as_ref().filter(|n| !n.is_empty()) {
                new_attributes.push(("name".to_string(), name.clone()));
            }
            // A block of the same type keeps how it signs in (a client secret, an auth method).
            if label(block) == Some(new_type.as_str()) {
                new_attributes.extend(
                    identity_attributes(block, new_type)
                        .into_iter()
                        .filter(|(key, _)| !attributes.iter().any(|(given, _)| given == key)),
                );
            }
            new_attributes.extend(attributes.iter().cloned());
            disable_and_add(config, block, new_type, &new_attributes, &layout)?
        }
        SealEdit::RemoveDisabled { selector } => {
            let wanted = match selector {
                Some(selector) => format!("disabled {selector}"),
                None => "disabled seal block".to_string(),
            };
            let block = select(
                &body,
                |b| is_disabled(b) && selector.as_ref().is_none_or(|s| matches(b, s)),
                &wanted,
            )?;
            remove_block(config, block)?
        }
    };
    validate(&edited)?;
    Ok(edited)
}

/// Vault's rules for seal blocks (Vault CE and OpenBao): at most two, exactly one enabled, and
/// distinct names where both blocks have one.
pub fn validate(config: &str) -> Result<(), SealEditError> {
    let body: hcl::Body = hcl::parse(config)
        .map_err(|e| SealEditError(format!("the edited configuration is not valid HCL: {e}")))?;
    let seals: Vec<&hcl::Block> = body
        .blocks()
        .filter(|b| b.identifier.as_str() == "seal")
        .collect();
    if seals.len() > 2 {
        return Err(SealEditError(format!(
            "the configuration would have {} seal blocks; Vault accepts at most two",
            seals.len()
        )));
    }
    let disabled = |block: &hcl::Block| {
        block.body.attributes().any(|a| {
            a.key.as_str() == "disabled"
                && matches!(&a.expr, hcl::Expression::Bool(true))
                    | matches!(&a.expr, hcl::Expression::String(s) if s == "true")
        })
    };
    let enabled = seals.iter().filter(|b| !disabled(b)).count();
    if !seals.is_empty() && enabled != 1 {
        return Err(SealEditError(format!(
            "the configuration would have {enabled} enabled seal blocks; Vault needs exactly one"
        )));
    }
    let names: Vec<String> = seals
        .iter()
        .filter_map(|b| {
            b.body
                .attributes()
                .find_map(|a| match (&a.expr, a.key.as_str()) {
                    (hcl::Expression::String(name), "name") => Some(name.clone()),
                    _ => None,
                })
        })
        .collect();
    if names.len() == 2 && names[0] == names[1] {
        return Err(SealEditError(format!(
            "both seal blocks are named \"{}\"; give them distinct names",
            names[0]
        )));
    }
    Ok(())
}

/// The attributes of a seal block that point it at a key of this kind of key service, as the
/// key-service target names them.
pub fn key_attributes(kind: planc_schema::plan::TargetKind) -> &'static [&'static str] {
    use planc_schema::plan::TargetKind;
    match kind {
        TargetKind::Azurekeyvault => &["tenant_id", "vault_name", "key_name"],
        TargetKind::Transit => &["address", "token", "mount_path", "key_name"],
        TargetKind::Awskms => &["region", "kms_key_id"],
        TargetKind::Gcpckms => &["project", "region", "key_ring", "crypto_key"],
        TargetKind::Kubernetes | TargetKind::Vault => &[],
    }
}

/// The attributes of every `seal "<seal_type>"` block of `config`, each with its string value
/// (`None` for another kind of expression); nothing for a configuration that does not parse.
pub fn block_attributes(config: &str, seal_type: &str) -> Vec<Vec<(String, Option<String>)>> {
    let Ok(body) = hcl::parse(config) else {
        return Vec::new();
    };
    body.blocks()
        .filter(|b| {
            b.identifier.as_str() == "seal"
                && b.labels.first().map(|l| l.as_str()) == Some(seal_type)
        })
        .map(|b| {
            b.body
                .attributes()
                .map(|a| {
                    let value = match &a.expr {
                        hcl::Expression::String(value) => Some(value.clone()),
                        _ => None,
                    };
                    (a.key.to_string(), value)
                })
                .collect()
        })
        .collect()
}

/// Whether `config` has a top-level block `identifier "labels[0]" "labels[1]"...`.
pub fn has_block(config: &str, identifier: &str, labels: &[&str]) -> bool {
    hcl::parse(config).is_ok_and(|body| {
        body.blocks().any(|b| {
            b.identifier.as_str() == identifier
                && b.labels
                    .iter()
                    .map(|l| l.as_str())
                    .eq(labels.iter().copied())
        })
    })
}

/// The key-service target kind of a seal type.
fn target_kind(seal_type: &str) -> Option<planc_schema::plan::TargetKind> {
    use planc_schema::plan::TargetKind;
    match seal_type {
        "azurekeyvault" => Some(TargetKind::Azurekeyvault),
        "transit" => Some(TargetKind::Transit),
        "awskms" => Some(TargetKind::Awskms),
        "gcpckms" => Some(TargetKind::Gcpckms),
        _ => None,
    }
}

/// The attributes of `block` (of type `seal_type`) that are not where the key is: how the seal
/// signs in and talks to the key service (`client_id`, `client_secret`, `auth_method`,
/// `disable_renewal`...), string or boolean values only.
fn identity_attributes(block: &Block, seal_type: &str) -> Vec<(String, String)> {
    let key = target_kind(seal_type).map(key_attributes).unwrap_or(&[]);
    block
        .body
        .attributes()
        .filter(|a| {
            let name = a.key.as_str();
            !key.contains(&name) && !["name", "disabled", "priority"].contains(&name)
        })
        .filter_map(|a| {
            let value = a
                .value
                .as_str()
                .map(str::to_string)
                .or_else(|| a.value.as_bool().map(|b| b.to_string()))?;
            Some((a.key.to_string(), value))
        })
        .collect()
}

/// Seal attributes whose values are secrets.
pub const SENSITIVE_ATTRIBUTES: &[&str] = &[
    "token",
    "client_secret",
    "secret_key",
    "secret_id",
    "password",
    "credentials",
    "access_key",
    "session_token",
];

/// The configuration with the values of sensitive attributes (anywhere, not only in seal blocks)
/// replaced by what `redact` returns for them.
pub fn redact(config: &str, mut redact: impl FnMut(&str) -> String) -> String {
    let Ok(body) = hcl::edit::parser::parse_body(config) else {
        return config.to_string();
    };
    let mut ranges: Vec<Range<usize>> = Vec::new();
    collect_sensitive(&body, &mut ranges);
    ranges.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(config.len());
    let mut at = 0;
    for range in ranges {
        if range.start < at {
            continue;
        }
        out.push_str(&config[at..range.start]);
        let value = &config[range.clone()];
        out.push_str(&quote(&redact(unquote(value))));
        at = range.end;
    }
    out.push_str(&config[at..]);
    out
}

fn collect_sensitive(body: &Body, ranges: &mut Vec<Range<usize>>) {
    for attribute in body.attributes() {
        if SENSITIVE_ATTRIBUTES.contains(&attribute.key.as_str())
            && let Some(range) = attribute.value.span()
        {
            ranges.push(range);
        }
    }
    for block in body.blocks() {
        collect_sensitive(&block.body, ranges);
    }
}

fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

fn parse(config: &str) -> Result<Body, SealEditError> {
    hcl::edit::parser::parse_body(config)
        .map_err(|e| SealEditError(format!("the configuration is not valid HCL: {e}")))
}

fn label(block: &Block) -> Option<&str> {
    match block.labels.as_slice() {
        [only] => Some(only.as_str()),
        _ => None,
    }
}

fn string_attribute<'a>(block: &'a Block, key: &str) -> Option<&'a str> {
    block.body.get_attribute(key).and_then(|a| a.value.as_str())
}

fn matches(block: &Block, selector: &SealSelector) -> bool {
    label(block) == Some(selector.seal_type.as_str())
        && selector
            .name
            .as_deref()
            .is_none_or(|name| string_attribute(block, "name") == Some(name))
}

fn is_disabled(block: &Block) -> bool {
    block
        .body
        .get_attribute("disabled")
        .is_some_and(|a| a.value.as_bool() == Some(true) || a.value.as_str() == Some("true"))
}

/// Exactly one seal block that satisfies `wanted`.
fn select<'a>(
    body: &'a Body,
    wanted: impl Fn(&Block) -> bool,
    description: &str,
) -> Result<&'a Block, SealEditError> {
    let seals: Vec<&Block> = body.get_blocks("seal").collect();
    let found: Vec<&Block> = seals.iter().copied().filter(|b| wanted(b)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => {
            let present: Vec<String> = seals
                .iter()
                .map(|b| {
                    let mut text = format!("seal \"{}\"", label(b).unwrap_or("?"));
                    if let Some(name) = string_attribute(b, "name") {
                        text.push_str(&format!(" named \"{name}\""));
                    }
                    if is_disabled(b) {
                        text.push_str(" (disabled)");
                    }
                    text
                })
                .collect();
            Err(SealEditError(if present.is_empty() {
                format!("no {description} found: the configuration has no seal block")
            } else {
                format!(
                    "no {description} found; the configuration has {}",
                    present.join(", ")
                )
            }))
        }
        many => Err(SealEditError(format!(
            "{} blocks match {description}; add `name` to the selector to pick one",
            many.len()
        ))),
    }
}

/// Line ending and indentation unit of a configuration.
struct Layout {
    eol: &'static str,
    unit: String,
}

impl Layout {
    fn of(config: &str) -> Layout {
        let eol = if config.contains("\r\n") {
            "\r\n"
        } else {
            "\n"
        };
        let unit = config
            .lines()
            .map(|l| &l[..l.len() - l.trim_start().len()])
            .filter(|i| !i.is_empty())
            .min_by_key(|i| i.len())
            .unwrap_or("  ")
            .to_string();
        Layout { eol, unit }
    }
}

fn span_of(block: &Block) -> Result<Range<usize>, SealEditError> {
    block
        .span()
        .ok_or_else(|| SealEditError("the parser gave no position for a seal block".into()))
}

fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// The end of the line holding `at`, after its line break.
fn line_end(text: &str, at: usize) -> usize {
    text[at..].find('\n').map_or(text.len(), |i| at + i + 1)
}

fn indentation_at(text: &str, at: usize) -> &str {
    let start = line_start(text, at);
    let line = &text[start..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// Indentation of the block's attributes: that of its first attribute, or one unit deeper.
fn inner_indentation(
    config: &str,
    block: &Block,
    layout: &Layout,
) -> Result<String, SealEditError> {
    let outer = indentation_at(config, span_of(block)?.start).to_string();
    Ok(block
        .body
        .attributes()
        .find_map(|a| a.span())
        .map(|span| indentation_at(config, span.start).to_string())
        .filter(|inner| inner.len() > outer.len())
        .unwrap_or_else(|| format!("{outer}{}", layout.unit)))
}

/// Offset of the start of the line that holds the block's closing brace.
fn closing_line(config: &str, block: &Block) -> Result<usize, SealEditError> {
    let span = span_of(block)?;
    let close = config[..span.end]
        .rfind('}')
        .ok_or_else(|| SealEditError("a seal block without a closing brace".into()))?;
    let open = config[span.start..]
        .find('{')
        .map(|i| span.start + i)
        .unwrap_or(span.start);
    if config[open..close].contains('\n') {
        Ok(line_start(config, close))
    } else {
        Err(SealEditError(
            "the seal block is written on one line; write its attributes on lines of their own"
                .into(),
        ))
    }
}

fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

/// Where a block aligns its `=` signs: the key width all its attributes are padded to, when
/// they share one column.
fn aligned_key_width(config: &str, block: &Block) -> Option<usize> {
    let widths: Vec<usize> = block
        .body
        .attributes()
        .filter_map(|a| {
            let span = a.span()?;
            let line = &config[span.clone()];
            let key_and_pad = line.split('=').next()?;
            Some(
                key_and_pad
                    .trim_end_matches(' ')
                    .len()
                    .max(key_and_pad.len() - 1),
            )
        })
        .collect();
    let first = *widths.first()?;
    (widths.len() > 1 && widths.iter().all(|w| *w == first)).then_some(first)
}

fn aligned_attribute_lines(
    attributes: &[(String, String)],
    indent: &str,
    eol: &str,
    min_width: usize,
) -> String {
    let width = attributes
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0)
        .max(min_width);
    attributes
        .iter()
        .map(|(key, value)| format!("{indent}{key:<width$} = {}{eol}", quote(value)))
        .collect()
}

fn set_attributes(
    config: &str,
    block: &Block,
    attributes: &[(String, String)],
    layout: &Layout,
) -> Result<String, SealEditError> {
    let mut replacements: Vec<(Range<usize>, String)> = Vec::new();
    let mut missing = Vec::new();
    for (key, value) in attributes {
        match block.body.get_attribute(key).and_then(|a| a.value.span()) {
            Some(range) => replacements.push((range, quote(value))),
            None => missing.push((key.clone(), value.clone())),
        }
    }
    if !missing.is_empty() {
        let at = closing_line(config, block)?;
        let indent = inner_indentation(config, block, layout)?;
        let width = aligned_key_width(config, block).unwrap_or(0);
        replacements.push((
            at..at,
            aligned_attribute_lines(&missing, &indent, layout.eol, width),
        ));
    }
    Ok(splice(config, replacements))
}

fn disable_and_add(
    config: &str,
    block: &Block,
    new_type: &str,
    attributes: &[(String, String)],
    layout: &Layout,
) -> Result<String, SealEditError> {
    let span = span_of(block)?;
    let inner = inner_indentation(config, block, layout)?;
    let outer = indentation_at(config, span.start).to_string();
    let open = config[span.start..]
        .find('{')
        .map(|i| span.start + i)
        .ok_or_else(|| SealEditError("a seal block without an opening brace".into()))?;
    closing_line(config, block)?;
    let after_open = line_end(config, open);
    let width = aligned_key_width(config, block).unwrap_or(0);
    let disabled = aligned_attribute_lines(
        &[("disabled".to_string(), "true".to_string())],
        &inner,
        layout.eol,
        width,
    );
    let end = line_end(config, span.end.saturating_sub(1));
    let mut new_block = String::new();
    if end == config.len() && !config.ends_with('\n') {
        new_block.push_str(layout.eol);
    }
    new_block.push_str(&format!("{outer}seal {} {{{}", quote(new_type), layout.eol));
    new_block.push_str(&aligned_attribute_lines(
        attributes, &inner, layout.eol, width,
    ));
    new_block.push_str(&format!("{outer}}}{}", layout.eol));
    Ok(splice(
        config,
        vec![(after_open..after_open, disabled), (end..end, new_block)],
    ))
}

/// Remove the block's lines and the comment lines right above it, which describe it.
fn remove_block(config: &str, block: &Block) -> Result<String, SealEditError> {
    let span = span_of(block)?;
    let mut start = line_start(config, span.start);
    while start > 0 {
        let previous = line_start(config, start - 1);
        let line = config[previous..start].trim();
        if line.starts_with('#') || line.starts_with("//") {
            start = previous;
        } else {
            break;
        }
    }
    let end = line_end(config, span.end.saturating_sub(1));
    Ok(splice(config, vec![(start..end, String::new())]))
}

/// Replace byte ranges (not overlapping) with new text.
fn splice(text: &str, mut replacements: Vec<(Range<usize>, String)>) -> String {
    replacements.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(text.len() + 256);
    let mut at = 0;
    for (range, new) in replacements {
        out.push_str(&text[at..range.start]);
        out.push_str(&new);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}
