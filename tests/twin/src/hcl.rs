//! Just enough of HCL to edit Vault server configurations as text: a tokenizer that knows
//! strings, heredocs and comments, the blocks of a document (with their labels and byte ranges)
//! and the attributes of a block. Edits keep everything else byte for byte.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Ident,
    /// A quoted string or a heredoc.
    Str,
    Open,
    Close,
    Equals,
    Newline,
    Other,
}

/// One token: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

/// The tokens of `text` (comments and blanks dropped).
pub fn tokenize(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    let push = |tokens: &mut Vec<Token>, kind, start, end| tokens.push(Token { kind, start, end });
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b'\n' => {
                push(&mut tokens, TokenKind::Newline, index, index + 1);
                index += 1;
            }
            b' ' | b'\t' | b'\r' | b',' => index += 1,
            b'#' => index = line_end(bytes, index),
            b'/' if bytes.get(index + 1) == Some(&b'/') => index = line_end(bytes, index),
            b'/' if bytes.get(index + 1) == Some(&b'*') => {
                index = find(bytes, index + 2, b"*/").map_or(bytes.len(), |at| at + 2);
            }
            b'"' => {
                let start = index;
                index += 1;
                while index < bytes.len() && bytes[index] != b'"' && bytes[index] != b'\n' {
                    index += if bytes[index] == b'\\' { 2 } else { 1 };
                }
                index = (index + 1).min(bytes.len());
                push(&mut tokens, TokenKind::Str, start, index);
            }
            b'<' if bytes.get(index + 1) == Some(&b'<') => {
                let start = index;
                let mut marker_start = index + 2;
                if bytes.get(marker_start) == Some(&b'-') {
                    marker_start += 1;
                }
                let marker_end = ident_end(bytes, marker_start);
                if marker_end == marker_start {
                    push(&mut tokens, TokenKind::Other, index, index + 2);
                    index += 2;
                    continue;
                }
                let marker = &text[marker_start..marker_end];
                let mut line = line_end(bytes, marker_end);
                index = bytes.len();
                while line < bytes.len() {
                    let next = line_end(bytes, line + 1);
                    if text[line + 1..next].trim() == marker {
                        index = next;
                        break;
                    }
                    line = next;
                }
                push(&mut tokens, TokenKind::Str, start, index);
            }
            b'{' => {
                push(&mut tokens, TokenKind::Open, index, index + 1);
                index += 1;
            }
            b'}' => {
                push(&mut tokens, TokenKind::Close, index, index + 1);
                index += 1;
            }
            b'=' if bytes.get(index + 1) != Some(&b'=') => {
                push(&mut tokens, TokenKind::Equals, index, index + 1);
                index += 1;
            }
            byte if byte.is_ascii_alphabetic() || byte == b'_' => {
                let end = ident_end(bytes, index);
                push(&mut tokens, TokenKind::Ident, index, end);
                index = end;
            }
            _ => {
                let start = index;
                index += 1;
                while index < bytes.len()
                    && !b" \t\r\n,{}=\"#".contains(&bytes[index])
                    && !bytes[index].is_ascii_alphabetic()
                {
                    index += 1;
                }
                push(&mut tokens, TokenKind::Other, start, index);
            }
        }
    }
    tokens
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from.min(bytes.len())..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |at| from + at)
}

fn ident_end(bytes: &[u8], from: usize) -> usize {
    let mut end = from;
    while end < bytes.len()
        && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b'-')
    {
        end += 1;
    }
    end
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| from + at)
}

/// One block: `ident "label" ... { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub ident: String,
    /// Labels without quotes.
    pub labels: Vec<String>,
    /// Byte offset of the identifier.
    pub start: usize,
    /// Byte offset of the opening brace.
    pub open: usize,
    /// Byte offset just after the closing brace (end of text if unclosed).
    pub end: usize,
    /// Nesting depth: 0 for top-level blocks.
    pub depth: usize,
    /// Index of the opening brace in the token list.
    open_token: usize,
    close_token: usize,
}

/// A parsed document: its text, tokens and blocks (in order of their start).
#[derive(Debug, Clone)]
pub struct Document<'a> {
    pub text: &'a str,
    tokens: Vec<Token>,
    pub blocks: Vec<Block>,
}

fn unquote(text: &str) -> String {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .replace("\\\"", "\"")
        .replace("\\\\", "\\")
}

impl<'a> Document<'a> {
    pub fn parse(text: &'a str) -> Document<'a> {
        let tokens = tokenize(text);
        let mut blocks: Vec<Block> = Vec::new();
        let mut open: Vec<Option<usize>> = Vec::new();
        let mut index = 0;
        while index < tokens.len() {
            let token = tokens[index];
            let at_statement_start = index == 0
                || matches!(
                    tokens[index - 1].kind,
                    TokenKind::Newline | TokenKind::Open | TokenKind::Close
                );
            match token.kind {
                TokenKind::Ident if at_statement_start => {
                    let mut next = index + 1;
                    let mut labels = Vec::new();
                    while next < tokens.len()
                        && matches!(tokens[next].kind, TokenKind::Str | TokenKind::Ident)
                    {
                        labels.push(unquote(&text[tokens[next].start..tokens[next].end]));
                        next += 1;
                    }
                    if next < tokens.len() && tokens[next].kind == TokenKind::Open {
                        blocks.push(Block {
                            ident: text[token.start..token.end].to_string(),
                            labels,
                            start: token.start,
                            open: tokens[next].start,
                            end: text.len(),
                            depth: open.len(),
                            open_token: next,
                            close_token: tokens.len(),
                        });
                        open.push(Some(blocks.len() - 1));
                        index = next + 1;
                        continue;
                    }
                }
                TokenKind::Open => open.push(None),
                TokenKind::Close => {
                    if let Some(Some(block)) = open.pop() {
                        blocks[block].end = token.end;
                        blocks[block].close_token = index;
                    }
                }
                _ => {}
            }
            index += 1;
        }
        Document {
            text,
            tokens,
            blocks,
        }
    }

    /// Blocks named `ident` whose first label is `label` (any label when `None`).
    pub fn blocks_named(&self, ident: &str, label: Option<&str>) -> Vec<&Block> {
        self.blocks
            .iter()
            .filter(|block| {
                block.ident == ident
                    && label
                        .is_none_or(|label| block.labels.first().map(String::as_str) == Some(label))
            })
            .collect()
    }

    /// The raw value text of attribute `name` directly inside `block` (strings unquoted).
    pub fn attribute(&self, block: &Block, name: &str) -> Option<String> {
        let mut depth = 0usize;
        let mut index = block.open_token + 1;
        while index < block.close_token.min(self.tokens.len()) {
            let token = self.tokens[index];
            match token.kind {
                TokenKind::Open => depth += 1,
                TokenKind::Close => depth = depth.saturating_sub(1),
                TokenKind::Ident
                    if depth == 0
                        && &self.text[token.start..token.end] == name
                        && self.tokens.get(index + 1).map(|t| t.kind)
                            == Some(TokenKind::Equals) =>
                {
                    let value = self.tokens.get(index + 2)?;
                    return Some(unquote(&self.text[value.start..value.end]));
                }
                _ => {}
            }
            index += 1;
        }
        None
    }
}

/// `text` without the blocks named `ident` (each with the rest of its last line).
pub fn remove_blocks(text: &str, ident: &str) -> (String, usize) {
    let document = Document::parse(text);
    let mut ranges: Vec<(usize, usize)> = document
        .blocks_named(ident, None)
        .into_iter()
        .map(|block| {
            let end = if text[block.end..].starts_with('\n') {
                block.end + 1
            } else {
                block.end
            };
            (block.start, end)
        })
        .collect();
    ranges.sort();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut removed = 0;
    for (start, end) in ranges {
        if start < at {
            continue;
        }
        out.push_str(&text[at..start]);
        at = end;
        removed += 1;
    }
    out.push_str(&text[at..]);
    (out, removed)
}

/// Adds `name = value` lines right after the opening brace of every block `ident "label"` that
/// lacks them; the names it added.
pub fn add_missing_attributes(
    text: &str,
    ident: &str,
    label: &str,
    attributes: &[(&str, &str)],
) -> (String, Vec<String>) {
    let document = Document::parse(text);
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut added = Vec::new();
    for block in document.blocks_named(ident, Some(label)) {
        let mut lines = String::new();
        for (name, value) in attributes {
            if document.attribute(block, name).is_none() {
                lines.push_str(&format!("\n  {name} = {value}"));
                if !added.iter().any(|a| a == name) {
                    added.push(name.to_string());
                }
            }
        }
        if !lines.is_empty() {
            inserts.push((block.open + 1, lines));
        }
    }
    let mut out = text.to_string();
    for (at, lines) in inserts.into_iter().rev() {
        out.insert_str(at, &lines);
    }
    (out, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
ui = true
# listener { not a block }
listener "tcp" {
  tls_disable = 1
  address = "[::]:8200"
  cluster_address = "[::]:8201"
}
storage "raft" {
  path = "/vault/data" // where raft lives
  retry_join {
    leader_api_addr = "http://vault-0.vault-internal:8200"
  }
}
seal "transit" {
  address = "http://127.0.0.1:8200"
  token = "a \"quoted\" {brace}"
}
service_registration "kubernetes" {}
"#;

    #[test]
    fn blocks_and_attributes_are_found_past_comments_and_strings() {
        let document = Document::parse(CONFIG);
        let names: Vec<(&str, usize)> = document
            .blocks
            .iter()
            .map(|b| (b.ident.as_str(), b.depth))
            .collect();
        assert_eq!(
            names,
            [
                ("listener", 0),
                ("storage", 0),
                ("retry_join", 1),
                ("seal", 0),
                ("service_registration", 0)
            ]
        );
        let listener = document.blocks_named("listener", Some("tcp"))[0];
        assert_eq!(
            document.attribute(listener, "address").as_deref(),
            Some("[::]:8200")
        );
        assert_eq!(
            document.attribute(listener, "tls_disable").as_deref(),
            Some("1")
        );
        let storage = document.blocks_named("storage", Some("raft"))[0];
        assert_eq!(
            document.attribute(storage, "leader_api_addr"),
            None,
            "attributes of nested blocks are not the block's"
        );
        let seal = document.blocks_named("seal", None)[0];
        assert_eq!(
            document.attribute(seal, "token").as_deref(),
            Some("a \"quoted\" {brace}")
        );
    }

    #[test]
    fn blocks_are_removed_and_attributes_added() {
        let (without, removed) = remove_blocks(CONFIG, "service_registration");
        assert_eq!(removed, 1);
        assert!(!without.contains("service_registration"));
        assert!(without.ends_with("}\n"));
        let (faster, added) = add_missing_attributes(
            &without,
            "storage",
            "raft",
            &[("path", "\"x\""), ("performance_multiplier", "1")],
        );
        assert_eq!(added, ["performance_multiplier"]);
        assert!(faster.contains("storage \"raft\" {\n  performance_multiplier = 1\n  path"));
        let document = Document::parse(&faster);
        assert_eq!(document.blocks.len(), 4);
    }

    #[test]
    fn heredocs_and_unclosed_input_do_not_panic() {
        let text = "a = <<EOF\n{ not a block\nEOF\nb \"x\" {\n c = 1\n";
        let document = Document::parse(text);
        assert_eq!(document.blocks.len(), 1);
        assert_eq!(document.blocks[0].end, text.len());
        for broken in ["\"", "<<", "<<-", "/*", "}}}", "x {", "{"] {
            let _ = Document::parse(broken);
            let _ = remove_blocks(broken, "x");
            let _ = add_missing_attributes(broken, "x", "y", &[("a", "1")]);
        }
    }
}
