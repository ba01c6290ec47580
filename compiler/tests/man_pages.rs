//! The committed man pages `book/man/planc*.1` are what `planc man DIR` generates from the very
//! command line planc parses; `UPDATE_EXPECT=1` rewrites them (and drops pages of subcommands
//! that are gone). The hidden `man` subcommand stays out of `--help` and out of the pages.

#[path = "../../tests/shared/man_pages.rs"]
mod shared;

use std::path::Path;

fn man_pages() -> shared::ManPages {
    shared::ManPages {
        binary: "planc",
        program: env!("CARGO_BIN_EXE_planc").into(),
        committed: Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/man"),
        scratch: env!("CARGO_TARGET_TMPDIR").into(),
    }
}

#[test]
fn the_committed_man_pages_match_the_command_line() {
    man_pages().check_committed("planc-check.1");
}

#[test]
fn the_hidden_man_subcommand_is_in_neither_help_nor_pages() {
    man_pages().check_hidden("completions");
}
