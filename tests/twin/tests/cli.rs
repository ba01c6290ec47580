//! The `twin` binary: `up` in the background, `status`, `down`, and `up --foreground`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Kubectl;

fn twin(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twin"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("the twin binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "twin failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Whether `pid` is a running (not zombie) process.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with(['R', 'S', 'D']))
        })
        .unwrap_or(false)
}

/// Runs `twin down` on drop, so a failing test leaves no server behind.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = twin(&["down"], &self.0);
    }
}

#[test]
fn up_status_and_down_manage_a_background_twin() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("bed");
    let _guard = StopOnDrop(dir.clone());

    let up = stdout(&twin(&["up"], &dir));
    assert!(
        up.contains("cluster old: http://127.0.0.1:")
            && up.contains("cluster new: http://127.0.0.1:"),
        "{up}"
    );
    assert_eq!(mode(&dir), 0o700);
    for file in ["kubeconfig", "env", "twin.pid", "twin.log"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    let kubeconfig = dir.canonicalize().unwrap().join("kubeconfig");
    assert!(
        env.contains(&format!("export KUBECONFIG='{}'", kubeconfig.display())),
        "{env}"
    );
    assert!(
        env.contains("export OLD_API_URL='http://127.0.0.1:"),
        "{env}"
    );

    let pid: i32 = std::fs::read_to_string(dir.join("twin.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(running(pid));
    let status = stdout(&twin(&["status"], &dir));
    assert_eq!(
        status.matches("Kubernetes v1.33.0-twin").count(),
        2,
        "{status}"
    );
    let kubectl = Kubectl::new(&kubeconfig);
    assert!(
        kubectl
            .run(&["--context", "new", "get", "namespaces", "-o", "name"])
            .contains("namespace/default")
    );

    let twice = twin(&["up"], &dir);
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already running"));

    let down = stdout(&twin(&["down"], &dir));
    assert!(
        down.contains(&format!("twin stopped (pid {pid})")),
        "{down}"
    );
    assert!(!running(pid), "the server process is gone");
    assert!(!dir.join("twin.pid").exists());
    let status = twin(&["status"], &dir);
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("no twin running"));
    assert!(stdout(&twin(&["down"], &dir)).contains("no twin running"));
}

#[test]
fn foreground_twin_stops_cleanly_on_sigterm() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("bed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_twin"))
        .args(["up", "--foreground", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("clusters.json").exists() {
        if let Some(exit) = child.try_wait().unwrap() {
            panic!("twin up --foreground exited early: {exit}");
        }
        assert!(
            Instant::now() < deadline,
            "twin up --foreground did not get ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id() as i32;
    assert_eq!(
        std::fs::read_to_string(dir.join("twin.pid"))
            .unwrap()
            .trim(),
        pid.to_string()
    );
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    assert!(!dir.join("twin.pid").exists());
}

#[test]
fn help_shows_an_example() {
    let output = Command::new(env!("CARGO_BIN_EXE_twin"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("twin up --dir /tmp/bed"), "{help}");
    assert!(help.contains("twin down --dir"), "{help}");
}
