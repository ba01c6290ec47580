//! The man-page checks of `planc` and `planx`, included by each crate's `tests/man_pages.rs`
//! (`#[path]`): the committed pages `book/man/BINARY*.1` are what `BINARY man DIR` generates
//! from the very command line it parses (`UPDATE_EXPECT=1` rewrites them and drops pages of
//! subcommands that are gone), and the hidden `man` subcommand stays out of `--help` and the
//! pages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One binary: its name, its path, where the committed pages are, a scratch folder.
pub struct ManPages {
    pub binary: &'static str,
    pub program: PathBuf,
    pub committed: PathBuf,
    pub scratch: PathBuf,
}

impl ManPages {
    /// `name -> text` of this binary's pages in a folder: `BINARY.1` and `BINARY-*.1`.
    fn pages(&self, dir: &Path) -> BTreeMap<String, String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return BTreeMap::new();
        };
        entries
            .map(|entry| entry.expect("readable folder").path())
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?.to_string();
                let ours = name == format!("{}.1", self.binary)
                    || (name.starts_with(&format!("{}-", self.binary)) && name.ends_with(".1"));
                ours.then(|| (name, std::fs::read_to_string(&path).expect("readable page")))
            })
            .collect()
    }

    /// The pages `BINARY man` writes into a fresh folder named after the calling test.
    fn generated(&self, test: &str) -> BTreeMap<String, String> {
        let dir = self.scratch.join(format!("{}-man-{test}", self.binary));
        let _ = std::fs::remove_dir_all(&dir);
        let status = Command::new(&self.program)
            .arg("man")
            .arg(&dir)
            .status()
            .expect("the binary runs");
        assert!(status.success(), "`{} man DIR` failed", self.binary);
        self.pages(&dir)
    }

    /// The committed pages match the generated ones (`sample` is a subcommand page that must be
    /// among them); with `UPDATE_EXPECT=1`, rewrite them.
    pub fn check_committed(&self, sample: &str) {
        let generated = self.generated("drift");
        let main_page = format!("{}.1", self.binary);
        assert!(
            generated.contains_key(&main_page) && generated.contains_key(sample),
            "{} man wrote {:?}",
            self.binary,
            generated.keys()
        );
        let committed = self.pages(&self.committed);
        if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| !v.is_empty()) {
            std::fs::create_dir_all(&self.committed).expect("book/ is writable");
            for name in committed.keys().filter(|n| !generated.contains_key(*n)) {
                std::fs::remove_file(self.committed.join(name)).expect("remove a stale page");
            }
            for (name, text) in &generated {
                std::fs::write(self.committed.join(name), text).expect("book/man is writable");
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
            "book/man is stale for {stale:?}: {binary}'s command line changed. Run `UPDATE_EXPECT=1 cargo test -p {binary} --test man_pages` and commit the result",
            binary = self.binary
        );
    }

    /// `man` is in neither `--help` (which lists `listed`) nor the pages.
    pub fn check_hidden(&self, listed: &str) {
        let help = Command::new(&self.program)
            .arg("--help")
            .output()
            .expect("the binary runs");
        let help = String::from_utf8(help.stdout).expect("UTF-8 help");
        assert!(help.contains(&format!("  {listed}")), "{help}");
        assert!(
            !help.lines().any(|l| l.trim_start().starts_with("man ")),
            "{help}"
        );
        let generated = self.generated("hidden");
        assert!(!generated.contains_key(&format!("{}-man.1", self.binary)));
        let escaped = format!("{}\\-man", self.binary);
        assert!(generated.values().all(|page| !page.contains(&escaped)));
    }
}
