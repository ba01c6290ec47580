//! Seeded, reproducible mutation of real inputs for the generator-driven tests: a YAML or JSON
//! text is parsed into a tree that keeps duplicate keys possible, changed structurally (delete,
//! duplicate, reorder, retype, splice keys between mappings, anchors and aliases, tags, huge and
//! unicode values) or lexically (bytes and lines cut, repeated, swapped, re-indented), and
//! written back as YAML. The same seed always gives the same text.

/// SplitMix64: small, fast, and the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next_u64() % bound as u64) as usize
        }
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A YAML tree as the mutator sees it: mappings are lists of pairs, so a mutation can make
/// duplicate keys; a node may carry an anchor, be an alias, or carry a tag.
#[derive(Debug, Clone, PartialEq)]
pub enum Tree {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
    /// `&name` before the node.
    Anchored(String, Box<Tree>),
    /// `*name`.
    Alias(String),
    /// `!tag` before a scalar.
    Tagged(String, Box<Tree>),
}

impl Tree {
    /// From a parsed value (serde-saphyr into JSON keeps the document's key order).
    pub fn from_json(value: &serde_json::Value) -> Tree {
        match value {
            serde_json::Value::Null => Tree::Null,
            serde_json::Value::Bool(b) => Tree::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Tree::Int(i),
                None => Tree::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Tree::Str(s.clone()),
            serde_json::Value::Array(items) => {
                Tree::Seq(items.iter().map(Tree::from_json).collect())
            }
            serde_json::Value::Object(map) => Tree::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Tree::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Parse YAML (or JSON) text; `None` when it does not parse.
    pub fn parse(text: &str) -> Option<Tree> {
        let value: serde_json::Value = serde_saphyr::from_str(text).ok()?;
        Some(Tree::from_json(&value))
    }

    /// Block-style YAML; strings double-quoted with JSON escapes (valid YAML).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        match self {
            Tree::Seq(items) if !items.is_empty() => write_seq(&mut out, items, 0),
            Tree::Map(entries) if !entries.is_empty() => write_map(&mut out, entries, 0),
            other => {
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
        out
    }

    /// As JSON: anchors and tags dropped, aliases become null (JSON has neither).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Tree::Null | Tree::Alias(_) => serde_json::Value::Null,
            Tree::Bool(b) => (*b).into(),
            Tree::Int(i) => (*i).into(),
            Tree::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Tree::Str(s) => s.clone().into(),
            Tree::Seq(items) => items.iter().map(Tree::to_json).collect(),
            Tree::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            Tree::Anchored(_, inner) | Tree::Tagged(_, inner) => inner.to_json(),
        }
    }

    /// How many nodes: the range of `node_mut`.
    pub fn count(&self) -> usize {
        1 + match self {
            Tree::Seq(items) => items.iter().map(Tree::count).sum(),
            Tree::Map(entries) => entries.iter().map(|(_, v)| v.count()).sum(),
            Tree::Anchored(_, inner) | Tree::Tagged(_, inner) => inner.count(),
            _ => 0,
        }
    }

    /// The `index`th node in document order (0 is the root).
    pub fn node_mut(&mut self, index: usize) -> Option<&mut Tree> {
        let mut index = index;
        self.walk_mut(&mut index)
    }

    fn walk_mut(&mut self, index: &mut usize) -> Option<&mut Tree> {
        if *index == 0 {
            return Some(self);
        }
        *index -= 1;
        match self {
            Tree::Seq(items) => items.iter_mut().find_map(|item| item.walk_mut(index)),
            Tree::Map(entries) => entries.iter_mut().find_map(|(_, v)| v.walk_mut(index)),
            Tree::Anchored(_, inner) | Tree::Tagged(_, inner) => inner.walk_mut(index),
            _ => None,
        }
    }
}

fn is_block(tree: &Tree) -> bool {
    match tree {
        Tree::Seq(items) => !items.is_empty(),
        Tree::Map(entries) => !entries.is_empty(),
        _ => false,
    }
}

fn inline(tree: &Tree) -> String {
    match tree {
        Tree::Null => "null".into(),
        Tree::Bool(b) => b.to_string(),
        Tree::Int(i) => i.to_string(),
        Tree::Float(f) if f.is_finite() => format!("{f:?}"),
        Tree::Float(_) => ".nan".into(),
        Tree::Str(s) => serde_json::to_string(s).expect("strings serialise"),
        Tree::Seq(_) => "[]".into(),
        Tree::Map(_) => "{}".into(),
        Tree::Alias(name) => format!("*{name}"),
        Tree::Anchored(name, inner) if !is_block(inner) => format!("&{name} {}", inline(inner)),
        Tree::Anchored(_, inner) => inline(inner),
        Tree::Tagged(tag, inner) => format!("{tag} {}", inline(inner)),
    }
}

fn key(name: &str) -> String {
    serde_json::to_string(name).expect("strings serialise")
}

fn write_value_after(out: &mut String, value: &Tree, indent: usize) {
    match value {
        Tree::Anchored(name, inner) if is_block(inner) => {
            out.push_str(&format!(" &{name}\n"));
            write_block(out, inner, indent);
        }
        other if is_block(other) => {
            out.push('\n');
            write_block(out, other, indent);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn write_block(out: &mut String, tree: &Tree, indent: usize) {
    match tree {
        Tree::Seq(items) => write_seq(out, items, indent),
        Tree::Map(entries) => write_map(out, entries, indent),
        _ => unreachable!("only blocks"),
    }
}

fn write_map(out: &mut String, entries: &[(String, Tree)], indent: usize) {
    for (name, value) in entries {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key(name));
        out.push(':');
        write_value_after(out, value, indent + 2);
    }
}

fn write_seq(out: &mut String, items: &[Tree], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        write_value_after(out, item, indent + 2);
    }
}

/// Values that have broken parsers and checkers elsewhere.
const ODD_STRINGS: &[&str] = &[
    "",
    " ",
    "{{",
    "}}",
    "{{ params. }}",
    "{{ steps.x.outputs }}",
    "{{ params.namespace | upper }}",
    "{% for x in y %}",
    "env:",
    "file:/dev/null",
    "prompt",
    "hvs.AAAAAAAAAAAAAAAAAAAAAAAA",
    "ünïcödé",
    "שלום",
    "😀🔥",
    "e\u{301}",
    "\u{200b}",
    "a\tb",
    "line\nbreak",
    "-1",
    "1e999",
    "0x10",
    "~",
    "null",
    "yes",
    "../../etc/passwd",
    "vault-0",
    "k8s.backup",
    "vault.step-down",
];

const TAGS: &[&str] = &[
    "!!str", "!!int", "!!bool", "!!null", "!!binary", "!custom", "!",
];

/// One structural mutation of `tree`, chosen by `rng`.
pub fn mutate_tree(tree: &mut Tree, rng: &mut Rng) {
    let count = tree.count();
    let target = rng.below(count);
    match rng.below(11) {
        0 => delete_child(tree, target, rng),
        1 => duplicate_child(tree, target, rng),
        2 => reorder(tree, target, rng),
        3 => retype(tree, target, rng),
        4 => splice(tree, rng),
        5 => anchor_and_alias(tree, rng),
        6 => {
            if let Some(node) = tree.node_mut(target) {
                let inner = std::mem::replace(node, Tree::Null);
                *node = Tree::Tagged(rng.pick(TAGS).to_string(), Box::new(inner));
            }
        }
        7 => {
            if let Some(node) = tree.node_mut(target) {
                *node = Tree::Str(huge(rng));
            }
        }
        8 => {
            if let Some(node) = tree.node_mut(target) {
                *node = Tree::Str(rng.pick(ODD_STRINGS).to_string());
            }
        }
        9 => rename_key(tree, target, rng),
        _ => {
            if let Some(node) = tree.node_mut(target) {
                *node = Tree::Alias(format!("missing{}", rng.below(3)));
            }
        }
    }
}

fn huge(rng: &mut Rng) -> String {
    let unit = rng.pick(&["a", "é", "😀", "{{ params.x }}", "- ", ": "]);
    unit.repeat(1 + rng.below(70_000))
}

fn delete_child(tree: &mut Tree, target: usize, rng: &mut Rng) {
    match tree.node_mut(target) {
        Some(Tree::Seq(items)) if !items.is_empty() => {
            let at = rng.below(items.len());
            items.remove(at);
        }
        Some(Tree::Map(entries)) if !entries.is_empty() => {
            let at = rng.below(entries.len());
            entries.remove(at);
        }
        _ => {}
    }
}

fn duplicate_child(tree: &mut Tree, target: usize, rng: &mut Rng) {
    match tree.node_mut(target) {
        Some(Tree::Seq(items)) if !items.is_empty() => {
            let at = rng.below(items.len());
            let copy = items[at].clone();
            items.insert(at, copy);
        }
        Some(Tree::Map(entries)) if !entries.is_empty() => {
            let at = rng.below(entries.len());
            let copy = entries[at].clone();
            entries.insert(at, copy);
        }
        _ => {}
    }
}

fn reorder(tree: &mut Tree, target: usize, rng: &mut Rng) {
    match tree.node_mut(target) {
        Some(Tree::Seq(items)) if items.len() > 1 => {
            let (a, b) = (rng.below(items.len()), rng.below(items.len()));
            items.swap(a, b);
        }
        Some(Tree::Map(entries)) if entries.len() > 1 => {
            let (a, b) = (rng.below(entries.len()), rng.below(entries.len()));
            entries.swap(a, b);
        }
        _ => {}
    }
}

fn retype(tree: &mut Tree, target: usize, rng: &mut Rng) {
    let Some(node) = tree.node_mut(target) else {
        return;
    };
    *node = match rng.below(7) {
        0 => Tree::Null,
        1 => Tree::Bool(rng.chance(2)),
        2 => Tree::Int(*rng.pick(&[0, -1, 1, i64::MAX, i64::MIN, 65_536])),
        3 => Tree::Float(*rng.pick(&[0.5, -0.0, 1e308, f64::NAN])),
        4 => Tree::Seq(vec![std::mem::replace(node, Tree::Null)]),
        5 => Tree::Map(vec![("x".into(), std::mem::replace(node, Tree::Null))]),
        _ => Tree::Str(inline(node)),
    };
}

fn rename_key(tree: &mut Tree, target: usize, rng: &mut Rng) {
    if let Some(Tree::Map(entries)) = tree.node_mut(target)
        && !entries.is_empty()
    {
        let at = rng.below(entries.len());
        entries[at].0 = match rng.below(3) {
            0 => rng.pick(ODD_STRINGS).to_string(),
            1 => format!("{}x", entries[at].0),
            _ => entries[at].0.chars().rev().collect(),
        };
    }
}

/// Move one key (with its value) from one mapping into another.
fn splice(tree: &mut Tree, rng: &mut Rng) {
    let maps: Vec<usize> = (0..tree.count())
        .filter(|&i| matches!(tree.node_mut(i), Some(Tree::Map(e)) if !e.is_empty()))
        .collect();
    if maps.len() < 2 {
        return;
    }
    let from = *rng.pick(&maps);
    let Some(Tree::Map(entries)) = tree.node_mut(from) else {
        return;
    };
    let entry = entries.remove(rng.below(entries.len()));
    let maps: Vec<usize> = (0..tree.count())
        .filter(|&i| matches!(tree.node_mut(i), Some(Tree::Map(_))))
        .collect();
    if let Some(&to) = maps.get(rng.below(maps.len()))
        && let Some(Tree::Map(entries)) = tree.node_mut(to)
    {
        let at = rng.below(entries.len() + 1);
        entries.insert(at, entry);
    }
}

/// Anchor one node and replace a later one with an alias to it (an alias before its anchor,
/// or to itself, is a case the parser must refuse).
fn anchor_and_alias(tree: &mut Tree, rng: &mut Rng) {
    let count = tree.count();
    let anchor_at = rng.below(count);
    let name = format!("a{}", rng.below(100));
    if let Some(node) = tree.node_mut(anchor_at) {
        let inner = std::mem::replace(node, Tree::Null);
        *node = Tree::Anchored(name.clone(), Box::new(inner));
    }
    let alias_at = rng.below(tree.count());
    if let Some(node) = tree.node_mut(alias_at)
        && !matches!(node, Tree::Anchored(..))
    {
        *node = Tree::Alias(name);
    }
}

/// One lexical mutation of `text`: bytes cut or inserted, lines repeated, swapped, re-indented
/// or cut short, tabs for spaces.
pub fn mutate_text(text: &str, rng: &mut Rng) -> String {
    let bytes = text.as_bytes();
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    let lossy = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    match rng.below(8) {
        0 => lossy(bytes[..rng.below(bytes.len() + 1)].to_vec()),
        1 => {
            let (a, b) = (rng.below(bytes.len() + 1), rng.below(bytes.len() + 1));
            let (a, b) = (a.min(b), a.max(b));
            lossy([&bytes[..a], &bytes[b..]].concat())
        }
        2 => {
            let at = rng.below(bytes.len() + 1);
            let insert = rng.pick(&[
                ":",
                "- ",
                "\t",
                "{",
                "[",
                "&x ",
                "*x",
                "!!",
                "\"",
                "'",
                "#",
                "\u{feff}",
                "%YAML 1.1\n",
                "---\n",
                "...\n",
                "? ",
            ]);
            lossy([&bytes[..at], insert.as_bytes(), &bytes[at..]].concat())
        }
        3 if !lines.is_empty() => {
            let at = rng.below(lines.len());
            let line = lines[at];
            lines.insert(at, line);
            lines.concat()
        }
        4 if lines.len() > 1 => {
            let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
            lines.swap(a, b);
            lines.concat()
        }
        5 if !lines.is_empty() => {
            let at = rng.below(lines.len());
            let shifted = if rng.chance(2) {
                format!("  {}", lines[at])
            } else {
                lines[at].trim_start().to_string()
            };
            let mut owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            owned[at] = shifted;
            owned.concat()
        }
        6 => text.replacen("  ", "\t", 1 + rng.below(3)),
        _ => {
            let at = rng.below(bytes.len() + 1);
            let noise: Vec<u8> = (0..1 + rng.below(8))
                .map(|_| rng.below(256) as u8)
                .collect();
            lossy([&bytes[..at], &noise, &bytes[at..]].concat())
        }
    }
}

/// A mutant of `text`: a few structural mutations (when it parses), sometimes then a lexical
/// one. The same seed gives the same mutant.
pub fn mutant(text: &str, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let structural = Tree::parse(text).filter(|_| !rng.chance(4));
    let mut out = match structural {
        Some(mut tree) => {
            for _ in 0..1 + rng.below(3) {
                mutate_tree(&mut tree, &mut rng);
            }
            tree.to_yaml()
        }
        None => text.to_string(),
    };
    if rng.chance(3) || out == text {
        out = mutate_text(&out, &mut rng);
    }
    out
}

/// A mutant of a JSON document that stays JSON most of the time (files planx reads back are
/// JSON): a few structural mutations, sometimes then a lexical one.
pub fn json_mutant(text: &str, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut out = match Tree::parse(text).filter(|_| !rng.chance(5)) {
        Some(mut tree) => {
            for _ in 0..1 + rng.below(3) {
                mutate_tree(&mut tree, &mut rng);
            }
            serde_json::to_string_pretty(&tree.to_json()).expect("json values serialise")
        }
        None => text.to_string(),
    };
    if rng.chance(4) || out == text {
        out = mutate_text(&out, &mut rng);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_yaml_reads_back_as_the_same_tree() {
        let text = "a: 1\nb:\n  - x\n  - {c: \"d\\n\", e: null}\n  - []\nf: {}\ng: 1.5\n";
        let tree = Tree::parse(text).expect("parses");
        assert_eq!(Tree::parse(&tree.to_yaml()), Some(tree));
    }

    #[test]
    fn the_same_seed_gives_the_same_mutant() {
        let text = "version: 1\nname: x\nsteps:\n  - id: a\n    uses: k8s.backup\n";
        for seed in 0..200 {
            assert_eq!(mutant(text, seed), mutant(text, seed));
        }
        let distinct: std::collections::BTreeSet<String> =
            (0..200).map(|seed| mutant(text, seed)).collect();
        assert!(distinct.len() > 150, "mutants vary: {}", distinct.len());
    }
}
