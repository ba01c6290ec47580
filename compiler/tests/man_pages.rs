//! The committed man pages `book/man/planc*.1` are what `planc man DIR` generates from the very
//! command line planc parses; `UPDATE_EXPECT=1` rewrites them (and drops pages of subcommands
//! that are gone). The hidden `man` subcommand stays out of `--help` and out of the pages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const BINARY: &str = "planc";

/// `name -> text` of this binary's pages in a folder: `planc.1` and `planc-*.1`.
fn pages(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|entry| entry.expect("readable folder").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_string();
            let ours = name == format!("{BINARY}.1")
                || (name.starts_with(&format!("{BINARY}-")) && name.ends_with(".1"));
            ours.then(|| (name, std::fs::read_to_string(&path).expect("readable page")))
        })
        .collect()
}

/// The pages `planc man` writes into a fresh folder named after the calling test.
fn generated(test: &str) -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{BINARY}-man-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new(env!("CARGO_BIN_EXE_planc"))
        .arg("man")
        .arg(&dir)
        .status()
        .expect("planc runs");
    assert!(status.success(), "`{BINARY} man DIR` failed");
    pages(&dir)
}

#[test]
fn the_committed_man_pages_match_the_command_line() {
    let committed_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/man");
    let generated = generated("drift");
    assert!(
        generated.contains_key("planc.1") && generated.contains_key("planc-check.1"),
        "planc man wrote {:?}",
        generated.keys()
    );
    let committed = pages(&committed_dir);
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| !v.is_empty()) {
        std::fs::create_dir_all(&committed_dir).expect("book/ is writable");
        for name in committed.keys().filter(|n| !generated.contains_key(*n)) {
            std::fs::remove_file(committed_dir.join(name)).expect("remove a stale page");
        }
        for (name, text) in &generated {
            std::fs::write(committed_dir.join(name), text).expect("book/man is writable");
        }
        return;
    }
    let stale: BTreeSet<&String> = generated
        .keys()
        .chain(committed.keys())
        .filter(|name| generated.get(*name) != committed.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "book/man is stale for {stale:?}: planc's command line changed. Run `UPDATE_EXPECT=1 cargo test -p planc --test man_pages` and commit the result"
    );
}

#[test]
fn the_hidden_man_subcommand_is_in_neither_help_nor_pages() {
    let help = Command::new(env!("CARGO_BIN_EXE_planc"))
        .arg("--help")
        .output()
        .expect("planc runs");
    let help = String::from_utf8(help.stdout).expect("UTF-8 help");
    assert!(help.contains("  completions"), "{help}");
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("man ")),
        "{help}"
    );
    let generated = generated("hidden");
    assert!(!generated.contains_key("planc-man.1"));
    assert!(generated.values().all(|page| !page.contains("planc\\-man")));
}
