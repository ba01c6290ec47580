//! The OpenBao binary that `tests/twin/setup-openbao.sh` installs is found and runs.

use std::process::Command;

#[test]
fn bao_is_installed_and_reports_its_version() {
    let bao = twin::bao_path().unwrap_or_else(|missing| panic!("{missing}"));
    let output = Command::new(&bao)
        .arg("version")
        .output()
        .expect("bao runs");
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(
        version.starts_with("OpenBao v2.7.2"),
        "{} says {version}",
        bao.display()
    );
}
