//! Every internal link of the book resolves. mdBook builds a book with a link to a missing page
//! or heading without a word, so this test is what fails: each SUMMARY.md entry names a file,
//! and each relative link, image and raw `<a href>`/`<img src>` of `book/src/**/*.md`,
//! README.md and ARCHITECTURE.md names a file that exists (a book page must be in SUMMARY.md,
//! or mdBook does not render it), with a `#fragment` naming a heading of the target page by
//! mdBook's own rule for heading ids. Code blocks and inline code are not links.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use workspace_tests::workspace_root;

/// Folders `.ci/run` copies into the built book after `mdbook build`, as (folder in the built
/// book, folder in the repository): `man/planc.1` in a page at the top of `book/src/` is
/// `book/man/planc.1`. mdBook only copies what is under `book/src/`.
const COPIED_IN: &[(&str, &str)] = &[("man", "book/man")];

/// Files outside the book that send readers into it; their relative links are checked too.
const ENTRY_FILES: &[&str] = &["README.md", "ARCHITECTURE.md"];

#[test]
fn every_internal_link_of_the_book_resolves() {
    let report = check(&workspace_root());
    assert!(
        report.errors.is_empty(),
        "broken links ({}):\n{}",
        report.errors.len(),
        report.errors.join("\n")
    );
    // A scanner that stopped finding links would pass everything.
    assert!(
        report.checked >= 15,
        "only {} links found in the book",
        report.checked
    );
}

#[test]
fn the_command_reference_links_every_man_page() {
    let root = workspace_root();
    let page = std::fs::read_to_string(root.join("book/src/commands.md")).expect("commands.md");
    let linked: HashSet<String> = links(&page).into_iter().map(|l| l.target).collect();
    let mut pages = 0;
    for entry in std::fs::read_dir(root.join("book/man")).expect("book/man") {
        let name = entry.expect("folder entry").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".1") {
            pages += 1;
            assert!(
                linked.contains(&format!("man/{name}")),
                "book/src/commands.md does not link book/man/{name}"
            );
        }
    }
    assert!(pages >= 2, "book/man holds {pages} pages");
}

#[test]
fn the_readme_installs_the_mdbook_ci_pins() {
    let root = workspace_root();
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    let version = ci
        .lines()
        .find_map(|l| l.strip_prefix("MDBOOK_VERSION="))
        .expect(".ci/run pins MDBOOK_VERSION");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        readme.contains(&format!(
            "cargo install mdbook --version {version} --locked"
        )),
        "README.md should install mdBook {version}, the version .ci/run builds the book with"
    );
}

#[test]
fn the_checker_reports_missing_pages_files_and_anchors_with_file_and_line() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("book-links-negative");
    let _ = std::fs::remove_dir_all(&root);
    let files = [
        (
            "book/src/SUMMARY.md",
            "# Summary\n\n- [Page](page.md)\n- [Gone](gone.md)\n- [Draft]()\n",
        ),
        (
            "book/src/page.md",
            "# Page\n\
             \n\
             ## Set `--state` up {#setup}\n\
             \n\
             ## Twice\n\
             \n\
             ## Twice\n\
             \n\
             See [twice](#twice-1), [setup](#setup), [the man page](man/planc.1).\n\
             A [missing page](nowhere.md) and a [missing anchor](page.md#nowhere).\n\
             An [unlisted page](unlisted.md), a [missing man page](man/planx.1)\n\
             and a [file outside the book](../../plans/x.yaml).\n\
             \n\
             ```md\n\
             [in a fenced block](fenced.md)\n\
             ```\n\
             \n\
             \x20   [in an indented block](indented.md)\n\
             \n\
             Inline `[code](code.md)` is no link; <a href=\"page.md#twice\">raw HTML</a> is.\n\
             \n\
             [ref]: page.md#set---state-up\n",
        ),
        ("book/src/unlisted.md", "# Unlisted\n"),
        ("book/man/planc.1", ".TH planc 1\n"),
        (
            "README.md",
            "Read [the page](book/src/page.md#twice) and [another](book/src/other.md).\n\
             `book/src/page.md` is named, `book/src/renamed.md` too, `book/man/*.1` is a glob,\n\
             `book/book/index.html` is built.\n",
        ),
        ("ARCHITECTURE.md", "[Back](README.md#nothing)\n"),
    ];
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("temp folder");
        std::fs::write(path, text).expect("temp file");
    }
    let report = check(&root);
    assert_eq!(
        report.errors,
        [
            "book/src/SUMMARY.md:4: gone.md: no such file",
            "book/src/page.md:10: nowhere.md: no such file",
            "book/src/page.md:10: page.md#nowhere: no heading with the id `nowhere` in book/src/page.md",
            "book/src/page.md:11: unlisted.md: not in SUMMARY.md, so mdBook does not render it",
            "book/src/page.md:11: man/planx.1: no such file (book/man/planx.1)",
            "book/src/page.md:12: ../../plans/x.yaml: outside book/src, so not in the built book",
            "book/src/page.md:22: page.md#set---state-up: no heading with the id `set---state-up` in book/src/page.md",
            "README.md:1: book/src/other.md: no such file",
            "README.md:2: book/src/renamed.md: no such file",
            "ARCHITECTURE.md:1: README.md#nothing: no heading with the id `nothing` in README.md",
        ]
    );
}

#[test]
fn heading_ids_follow_mdbook() {
    // mdBook 0.5.4's own cases for `id_from_content` (mdbook-html/src/utils.rs).
    for (content, id) in [
        (
            "`--passes`: add more rustdoc passes",
            "--passes-add-more-rustdoc-passes",
        ),
        (
            "Method-call 🐙 expressions \u{1f47c}",
            "method-call--expressions-",
        ),
        ("_-_12345", "_-_12345"),
        ("中文標題 CJK title", "中文標題-cjk-title"),
        ("Über", "über"),
    ] {
        assert_eq!(id_from_content(content), id, "{content}");
    }
    // The ids `mdbook build` (0.5.4) gave this page, in order: Markdown shapes the text first
    // (links keep their text, smart punctuation turns `--` into a dash outside code, emphasis
    // marks go, escapes keep their character), repeats get `-1`, definition terms get ids too.
    let page = "# The Lease and `planx unlock`\n\
                ## See [the run](planx.md#run) -- twice\n\
                ## *Really* _new_ snake_case \\_x\n\
                ## Twice\n\
                ## Twice\n\
                Term\n\
                : its definition\n\
                ## Custom ## {#custom-id .class}\n\
                Setext\n\
                ------\n\
                ## `--passes`: add more rustdoc passes\n\
                ## Set `--state` up\n\
                ## A---b ---- c\n\
                ## Method-call 🐙 expressions\n\
                ## _-_12345\n\
                ## Über &amp; <em>x</em> ![img](a.png) [ref][r]\n\
                \n\
                [r]: http://x\n";
    assert_eq!(
        anchors(page),
        [
            "the-lease-and-planx-unlock",
            "see-the-run--twice",
            "really-new-snake_case-_x",
            "twice",
            "twice-1",
            "term",
            "custom-id",
            "setext",
            "--passes-add-more-rustdoc-passes",
            "set---state-up",
            "ab--c",
            "method-call--expressions",
            "_-_12345",
            "über--x--ref",
        ]
    );
}

/// What a check found: every broken link as `file:line: target: why`, and how many links it
/// looked at.
struct Report {
    errors: Vec<String>,
    checked: usize,
}

/// Checks the book under `root/book/src` and the links of [`ENTRY_FILES`] under `root`.
fn check(root: &Path) -> Report {
    let src = root.join("book/src");
    let mut checker = Checker {
        root: root.to_path_buf(),
        src: src.clone(),
        summary: HashSet::new(),
        anchors: HashMap::new(),
        report: Report {
            errors: Vec::new(),
            checked: 0,
        },
    };
    let summary_path = src.join("SUMMARY.md");
    let summary = std::fs::read_to_string(&summary_path).expect("book/src/SUMMARY.md");
    for link in links(&summary) {
        // `[Draft]()` is a draft chapter: listed, no file.
        if link.target.is_empty() {
            continue;
        }
        checker.report.checked += 1;
        let page = normalize(&src.join(link.target.split('#').next().unwrap_or_default()));
        if page.is_file() {
            checker.summary.insert(page);
        } else {
            checker.error(&summary_path, &link, "no such file".to_string());
        }
    }
    let mut files = Vec::new();
    markdown_files(&src, &mut files);
    files.retain(|file| *file != summary_path);
    files.extend(ENTRY_FILES.iter().map(|file| root.join(file)));
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for link in links(&text) {
            checker.check_link(&file, &link);
        }
        // README.md and ARCHITECTURE.md mostly name book pages as `book/src/page.md`.
        if !file.starts_with(&src) {
            for mention in book_paths(&text) {
                checker.report.checked += 1;
                if !root.join(&mention.target).exists() {
                    checker.error(&file, &mention, "no such file".to_string());
                }
            }
        }
    }
    checker.report
}

struct Checker {
    root: PathBuf,
    src: PathBuf,
    /// The pages SUMMARY.md lists: the ones mdBook renders.
    summary: HashSet<PathBuf>,
    /// The heading ids of every Markdown file looked at so far.
    anchors: HashMap<PathBuf, HashSet<String>>,
    report: Report,
}

impl Checker {
    fn error(&mut self, file: &Path, link: &Link, why: String) {
        self.report.errors.push(format!(
            "{}:{}: {}: {why}",
            self.relative(file),
            link.line,
            link.target
        ));
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn check_link(&mut self, from: &Path, link: &Link) {
        if link.target.is_empty() || has_scheme(&link.target) {
            return;
        }
        self.report.checked += 1;
        let (path, fragment) = match link.target.split_once('#') {
            Some((path, fragment)) => (path, Some(percent_decode(fragment))),
            None => (link.target.as_str(), None),
        };
        let path = percent_decode(path.split('?').next().unwrap_or_default());
        if path.starts_with('/') {
            return self.error(from, link, "an absolute path; link relatively".to_string());
        }
        let mut target = if path.is_empty() {
            from.to_path_buf()
        } else {
            normalize(&from.parent().expect("a folder").join(&path))
        };
        if from.starts_with(&self.src) {
            // In the built book the link names what mdBook made of book/src, plus COPIED_IN.
            let Ok(inside) = target.strip_prefix(&self.src).map(Path::to_path_buf) else {
                return self.error(
                    from,
                    link,
                    "outside book/src, so not in the built book".to_string(),
                );
            };
            if let Some((built, repository)) = COPIED_IN
                .iter()
                .find(|(built, _)| inside.starts_with(built))
            {
                let rest = inside.strip_prefix(built).expect("checked");
                target = self.root.join(repository).join(rest);
            }
            // `page.html` is what mdBook renders from `page.md`.
            if target.extension().is_some_and(|e| e == "html") {
                let page = target.with_extension("md");
                if page.starts_with(&self.src) && page.is_file() {
                    target = page;
                }
            }
            if target.extension().is_some_and(|e| e == "md") && !self.summary.contains(&target) {
                let why = if target.is_file() {
                    "not in SUMMARY.md, so mdBook does not render it"
                } else {
                    "no such file"
                };
                return self.error(from, link, why.to_string());
            }
        }
        if !target.exists() {
            let as_written = normalize(&from.parent().expect("a folder").join(&path));
            let why = if as_written == target {
                "no such file".to_string()
            } else {
                format!("no such file ({})", self.relative(&target))
            };
            return self.error(from, link, why);
        }
        let Some(fragment) = fragment else { return };
        if target.extension().is_none_or(|e| e != "md") {
            return;
        }
        let ids = self.anchors.entry(target.clone()).or_insert_with(|| {
            anchors(&std::fs::read_to_string(&target).expect("readable page"))
                .into_iter()
                .collect()
        });
        if !ids.contains(&fragment) {
            let why = format!(
                "no heading with the id `{fragment}` in {}",
                self.relative(&target)
            );
            self.error(from, link, why);
        }
    }
}

/// Every `*.md` file under a folder, sorted.
fn markdown_files(folder: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()))
        .map(|entry| entry.expect("folder entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// `a/./b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A URL with a scheme (`https:`, `mailto:`), by mdBook's test `^[a-z][a-z0-9+.-]*:`.
fn has_scheme(target: &str) -> bool {
    target.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_lowercase())
            && scheme
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c))
    })
}

/// `%20` and the like decoded; anything malformed is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

/// A link in a Markdown file: its 1-based line and its target as written.
struct Link {
    line: usize,
    target: String,
}

/// The lines outside fenced and indented code blocks, with their 1-based numbers. Indented
/// lines after a blank line are code unless a list is open (then they continue its item).
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    let mut indented_code = false;
    let mut previous_blank = true;
    let mut in_list = false;
    for (index, line) in text.lines().enumerate() {
        let blank = line.trim().is_empty();
        if let Some((ch, length)) = fence {
            let closes = fence_of(line).is_some_and(|(c, n)| {
                c == ch && n >= length && line.trim().chars().all(|x| x == ch)
            });
            if closes {
                fence = None;
            }
            continue;
        }
        let indent = indent_of(line);
        if indented_code {
            if blank || indent >= 4 {
                continue;
            }
            indented_code = false;
        }
        if !blank && indent >= 4 && previous_blank && !in_list {
            indented_code = true;
            continue;
        }
        if let Some(open) = fence_of(line) {
            fence = Some(open);
            previous_blank = false;
            continue;
        }
        if list_item(line) {
            in_list = true;
        } else if !blank && indent == 0 {
            in_list = false;
        }
        previous_blank = blank;
        out.push((index + 1, line));
    }
    out
}

/// The width of a line's indentation, a tab counting four.
fn indent_of(line: &str) -> usize {
    line.chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum()
}

/// The fence character and length when a line opens or closes a fenced code block.
fn fence_of(line: &str) -> Option<(char, usize)> {
    let trimmed = line.trim_start();
    let ch = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let length = trimmed.chars().take_while(|c| *c == ch).count();
    let info = &trimmed[length..];
    (length >= 3 && !(ch == '`' && info.contains('`'))).then_some((ch, length))
}

fn list_item(line: &str) -> bool {
    let trimmed = line.trim_start();
    let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
    let marker = if digits > 0 {
        trimmed[digits..].strip_prefix(['.', ')'])
    } else {
        trimmed.strip_prefix(['-', '*', '+'])
    };
    marker.is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// The code spans of a line, as (start, end, backticks) in characters, the backticks included.
fn code_spans(chars: &[char]) -> Vec<(usize, usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' || (i > 0 && chars[i - 1] == '\\') {
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        match closing_run(chars, i + run, run) {
            Some(end) => {
                spans.push((i, end, run));
                i = end;
            }
            None => i += run,
        }
    }
    spans
}

/// The line with every code span blanked out (same length, so nothing in it is a link).
fn without_code_spans(line: &str) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    for (start, end, _) in code_spans(&chars) {
        chars[start..end].fill(' ');
    }
    chars.into_iter().collect()
}

/// Where the code span opened by a run of `run` backticks ends (after its closing run).
fn closing_run(chars: &[char], from: usize, run: usize) -> Option<usize> {
    let mut j = from;
    while j < chars.len() {
        if chars[j] == '`' {
            let length = chars[j..].iter().take_while(|c| **c == '`').count();
            if length == run {
                return Some(j + length);
            }
            j += length;
        } else {
            j += 1;
        }
    }
    None
}

/// The paths into `book/` that a text names in inline code (`book/src/ci.md`); globs are not
/// paths, and `book/book/` is what `mdbook build` writes, not part of the repository.
fn book_paths(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (line_number, line) in prose_lines(text) {
        let chars: Vec<char> = line.chars().collect();
        for (start, end, run) in code_spans(&chars) {
            let code: String = chars[start + run..end - run].iter().collect();
            let path = code.starts_with("book/")
                && !code.starts_with("book/book/")
                && !code.contains(|c: char| c.is_whitespace() || c == '*');
            if path {
                out.push(Link {
                    line: line_number,
                    target: code,
                });
            }
        }
    }
    out
}

/// Every link target of a Markdown text: inline links and images, reference definitions, and
/// `href`/`src` of raw `<a>` and `<img>` elements.
fn links(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (line_number, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let mut push = |target: &str| {
            out.push(Link {
                line: line_number,
                target: target.to_string(),
            })
        };
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            push(&destination(rest));
        }
        let trimmed = line.trim_start();
        if let Some(label) = trimmed.strip_prefix('[').filter(|l| !l.starts_with('^'))
            && let Some(end) = label.find(']')
            && let Some(definition) = label[end + 1..].strip_prefix(':')
        {
            push(&destination(definition));
        }
        for (tag, attribute) in [("<a ", "href="), ("<img ", "src=")] {
            let mut rest = line.as_str();
            while let Some(at) = rest.find(tag) {
                let element = &rest[at..];
                let element = &element[..element.find('>').unwrap_or(element.len())];
                if let Some(value) = element
                    .find(attribute)
                    .map(|a| &element[a + attribute.len()..])
                    && let Some(quote) = value.chars().next().filter(|q| *q == '"' || *q == '\'')
                    && let Some(end) = value[1..].find(quote)
                {
                    push(&value[1..1 + end]);
                }
                rest = &rest[at + tag.len()..];
            }
        }
    }
    out
}

/// The destination at the start of `text` (after `](` or `]:`): `<...>`, or up to white space
/// or the `)` that closes the link, parentheses balanced.
fn destination(text: &str) -> String {
    let text = text.trim_start();
    if let Some(inner) = text.strip_prefix('<') {
        return inner[..inner.find('>').unwrap_or(inner.len())].to_string();
    }
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return text[..i].to_string(),
            ')' => depth -= 1,
            c if c.is_whitespace() => return text[..i].to_string(),
            _ => {}
        }
    }
    text.to_string()
}

/// The ids mdBook gives the headings and definition terms of a page, in page order: an
/// explicit `{#id}`, or [`id_from_content`] of the heading's text made unique by `-1`, `-2`...
/// (mdBook 0.5.4, `add_header_links` in mdbook-html/src/html/tree.rs), and any raw `id="..."`.
fn anchors(text: &str) -> Vec<String> {
    let mut used = HashSet::new();
    let mut ids = Vec::new();
    let mut generated = |content: &str, ids: &mut Vec<String>| {
        ids.push(unique_id(
            &id_from_content(&heading_text(content)),
            &mut used,
        ));
    };
    // The previous line when it is paragraph text: a setext underline or a `: definition`
    // makes it a heading or a definition term.
    let mut paragraph: Option<(usize, &str)> = None;
    for (number, line) in prose_lines(text) {
        let trimmed = line.trim();
        let follows = paragraph.filter(|(n, _)| *n + 1 == number).map(|(_, l)| l);
        let mut heading_or_term = false;
        if let Some((content, id)) = atx_heading(line) {
            match id {
                Some(id) => ids.push(id.to_string()),
                None => generated(content, &mut ids),
            }
            heading_or_term = true;
        } else if let Some(previous) = follows
            && indent_of(line) < 4
            && !trimmed.is_empty()
            && (trimmed.chars().all(|c| c == '=') || trimmed.chars().all(|c| c == '-'))
        {
            let (content, id) = heading_attributes(previous.trim());
            match id {
                Some(id) => ids.push(id.to_string()),
                None => generated(content, &mut ids),
            }
            heading_or_term = true;
        } else if let Some(previous) = follows
            && indent_of(line) < 4
            && trimmed.starts_with(": ")
        {
            generated(previous.trim(), &mut ids);
        }
        let mut rest = line;
        while let Some(at) = rest.find(" id=\"") {
            rest = &rest[at + 5..];
            if let Some(end) = rest.find('"') {
                ids.push(rest[..end].to_string());
            }
        }
        let plain = !trimmed.is_empty()
            && !heading_or_term
            && !list_item(line)
            && !trimmed.starts_with(['|', '>', '<', ':']);
        paragraph = plain.then_some((number, line));
    }
    ids
}

/// The text and explicit id of an ATX heading line (`## Text ## {#id}`).
fn atx_heading(line: &str) -> Option<(&str, Option<&str>)> {
    if indent_of(line) > 3 {
        return None;
    }
    let trimmed = line.trim_start();
    let level = trimmed.chars().take_while(|c| *c == '#').count();
    let rest = &trimmed[level..];
    if !(1..=6).contains(&level) || !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    // pulldown-cmark takes the attribute block off the end first, then the closing `#`s.
    let (content, id) = heading_attributes(rest.trim());
    let without_closer = content.trim_end_matches('#');
    let content = if without_closer.is_empty() {
        ""
    } else if without_closer.ends_with([' ', '\t']) {
        without_closer.trim_end()
    } else {
        content
    };
    Some((content, id))
}

/// A heading's text without its trailing attribute block (`{#id .class key=value}`, which
/// mdBook turns on), and the id the block gives: pulldown-cmark 0.13's
/// `extract_attribute_block_content_from_header_text` and `parse_inside_attribute_block`.
fn heading_attributes(text: &str) -> (&str, Option<&str>) {
    let Some(inside) = text.trim_end().strip_suffix('}') else {
        return (text, None);
    };
    match inside.rfind(['{', '}', '<', '>', '\\', '\n', '\r']) {
        Some(open) if inside[open..].starts_with('{') => {
            let id = inside[open + 1..]
                .split_ascii_whitespace()
                .rfind(|a| a.len() > 1 && a.starts_with('#'))
                .map(|a| &a[1..]);
            (inside[..open].trim_end(), id)
        }
        _ => (text, None),
    }
}

/// The text mdBook reads off a heading (`text_in_node`): the Markdown inline syntax rendered,
/// with pulldown-cmark's smart punctuation (which mdBook turns on) outside code spans. It covers
/// what headings use: code spans, links, images, emphasis, backslash escapes, inline HTML tags
/// and entities.
fn heading_text(content: &str) -> String {
    let chars: Vec<char> = content.chars().collect();
    // (character, true when no Markdown syntax: escaped or in a code span)
    let mut text: Vec<(char, bool)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let next = chars.get(i + 1).copied();
        match chars[i] {
            '\\' if next.is_some_and(|n| n.is_ascii_punctuation()) => {
                text.push((chars[i + 1], true));
                i += 2;
            }
            '`' => {
                let run = chars[i..].iter().take_while(|c| **c == '`').count();
                match closing_run(&chars, i + run, run) {
                    Some(end) => {
                        let mut inner = &chars[i + run..end - run];
                        // CommonMark strips one space off both ends of `` ` a ` ``.
                        if inner.len() > 2
                            && inner[0] == ' '
                            && inner[inner.len() - 1] == ' '
                            && inner.iter().any(|c| *c != ' ')
                        {
                            inner = &inner[1..inner.len() - 1];
                        }
                        text.extend(inner.iter().map(|c| (*c, true)));
                        i = end;
                    }
                    None => {
                        text.extend(chars[i..i + run].iter().map(|c| (*c, true)));
                        i += run;
                    }
                }
            }
            // An image's alt text becomes an attribute, no text of the heading.
            '!' if next == Some('[') => {
                i = after_bracketed(&chars, i + 1, '[', ']');
                if chars.get(i) == Some(&'(') {
                    i = after_bracketed(&chars, i, '(', ')');
                }
            }
            // A link keeps its text: its destination or reference label goes.
            ']' if next == Some('(') => i = after_bracketed(&chars, i + 1, '(', ')'),
            ']' if next == Some('[') => i = after_bracketed(&chars, i + 1, '[', ']'),
            '<' if next.is_some_and(|n| n.is_ascii_alphabetic() || n == '/') => {
                i = chars[i..]
                    .iter()
                    .position(|c| *c == '>')
                    .map_or(chars.len(), |end| i + end + 1);
            }
            '&' => {
                let name = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '#')
                    .count();
                if name > 0 && chars.get(i + 1 + name) == Some(&';') {
                    i += name + 2;
                } else {
                    text.push(('&', false));
                    i += 1;
                }
            }
            // Smart punctuation: `--` is an en dash, `---` an em dash, longer runs a mix.
            '-' => {
                let run = chars[i..].iter().take_while(|c| **c == '-').count();
                let dash = if run == 1 { '-' } else { '–' };
                text.extend(std::iter::repeat_n((dash, true), run));
                i += run;
            }
            c => {
                text.push((c, false));
                i += 1;
            }
        }
    }
    drop_emphasis_underscores(&mut text);
    text.into_iter().map(|(c, _)| c).collect()
}

/// The index after the bracketed group that opens at `open_at` (nesting counted).
fn after_bracketed(chars: &[char], open_at: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    for (offset, c) in chars[open_at..].iter().enumerate() {
        if *c == open {
            depth += 1;
        } else if *c == close {
            depth -= 1;
            if depth == 0 {
                return open_at + offset + 1;
            }
        }
    }
    chars.len()
}

/// Takes out the `_` runs that pair up as emphasis by CommonMark's flanking rules; `snake_case`
/// and an unpaired `_` stay. (`*` needs no care: the id drops it anyway.)
fn drop_emphasis_underscores(text: &mut Vec<(char, bool)>) {
    let is_run = |(c, literal): (char, bool)| c == '_' && !literal;
    let mut runs = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !is_run(text[i]) {
            i += 1;
            continue;
        }
        let length = text[i..].iter().take_while(|x| is_run(**x)).count();
        let before = i.checked_sub(1).map(|b| text[b].0);
        let after = text.get(i + length).map(|a| a.0);
        let space = |c: Option<char>| c.is_none_or(char::is_whitespace);
        let punct = |c: Option<char>| c.is_some_and(|c| c.is_ascii_punctuation());
        let left = !space(after) && (!punct(after) || space(before) || punct(before));
        let right = !space(before) && (!punct(before) || space(after) || punct(after));
        runs.push((
            i,
            length,
            left && (!right || punct(before)),
            right && (!left || punct(after)),
        ));
        i += length;
    }
    let mut openers: Vec<(usize, usize)> = Vec::new();
    let mut dropped = Vec::new();
    for (start, length, opens, closes) in runs {
        if closes && let Some(opener) = openers.pop() {
            dropped.push(opener);
            dropped.push((start, length));
        } else if opens {
            openers.push((start, length));
        }
    }
    dropped.sort_unstable();
    for (start, length) in dropped.into_iter().rev() {
        text.drain(start..start + length);
    }
}

/// mdBook 0.5.4's `id_from_content` (mdbook-html/src/utils.rs), verbatim.
fn id_from_content(content: &str) -> String {
    content
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|ch| {
            if ch.is_alphanumeric() || ch == '_' || ch == '-' {
                Some(ch)
            } else if ch.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// mdBook 0.5.4's `unique_id` (mdbook-html/src/utils.rs), verbatim: `id`, else `id-1`, `id-2`...
fn unique_id(id: &str, used: &mut HashSet<String>) -> String {
    if used.insert(id.to_string()) {
        return id.to_string();
    }
    let mut counter: u32 = 1;
    loop {
        let candidate = format!("{id}-{counter}");
        if used.insert(candidate.clone()) {
            return candidate;
        }
        counter += 1;
    }
}
