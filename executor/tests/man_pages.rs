//! The committed man pages `book/man/planx*.1` are what `planx man DIR` generates from the very
//! command line planx parses; `UPDATE_EXPECT=1` rewrites them (and drops pages of subcommands
//! that are gone). The hidden `man` subcommand stays out of `--help` and out of the pages.

#[path = "../../tests/shared/man_pages.rs"]
mod shared;

use std::path::Path;

fn man_pages() -> shared::ManPages {
    shared::ManPages {
        binary: "planx",
        program: env!("CARGO_BIN_EXE_planx").into(),
        committed: Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/man"),
        scratch: env!("CARGO_TARGET_TMPDIR").into(),
    }
}

#[test]
fn the_committed_man_pages_match_the_command_line() {
    man_pages().check_committed("planx-apply.1");
}

#[test]
fn the_hidden_man_subcommand_is_in_neither_help_nor_pages() {
    man_pages().check_hidden("unlock");
}
