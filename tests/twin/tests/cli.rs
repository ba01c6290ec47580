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

    let up = stdout(&twin(&["up", "--scenario", "empty"], &dir));
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

    let twice = twin(&["up", "--scenario", "empty"], &dir);
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
        .args(["up", "--foreground", "--scenario", "empty", "--dir"])
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

/// `KEY=value` pairs of the `export KEY='value'` lines of an env file.
fn exports(env: &str) -> std::collections::BTreeMap<String, String> {
    env.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            (
                key.to_string(),
                value.trim_matches('\'').replace(r"'\''", "'"),
            )
        })
        .collect()
}

/// `GET path` at `address` with `Host: host` and a Vault token: (status code, body).
fn get_through(address: &str, host: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("the gateway accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Vault-Token: {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, serde_json::from_str(body.trim()).unwrap_or_default())
}

/// Processes whose command line mentions `text`.
fn processes_mentioning(text: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(text) && running(pid) {
                found.push((pid, cmdline));
            }
        }
    }
    found
}

#[test]
fn up_brings_up_the_vault_pair_and_down_stops_every_process() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("bed");
    let _guard = StopOnDrop(dir.clone());
    let started = Instant::now();
    let up = stdout(&twin(&["up"], &dir));
    let elapsed = started.elapsed();
    eprintln!("twin up --scenario vault-pair took {elapsed:?}");
    assert!(up.contains("vault: http://vault.old.test"), "{up}");
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    let dir = dir.canonicalize().unwrap();

    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("secrets")), 0o700);
    for file in [
        "kubeconfig",
        "env",
        "params.yaml",
        "ca.pem",
        "secrets/old-root-token",
        "secrets/new-root-token",
        "secrets/old-recovery-keys",
        "secrets/old-kms-token",
        "secrets/new-kms-token",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    let env = exports(&std::fs::read_to_string(dir.join("env")).unwrap());
    for key in [
        "KUBECONFIG",
        "OLD_VAULT_URL",
        "NEW_VAULT_URL",
        "RESOLVE",
        "OLD_ROOT_TOKEN_FILE",
        "NEW_ROOT_TOKEN_FILE",
        "RECOVERY_KEYS_FILE",
        "PARAMS_FILE",
    ] {
        assert!(env.contains_key(key), "{key} missing from {env:?}");
    }
    assert_eq!(
        env["OLD_VAULT_URL"]
            .split("://")
            .nth(1)
            .unwrap()
            .split(':')
            .next(),
        Some("vault.old.test")
    );
    let recovery = std::fs::read_to_string(&env["RECOVERY_KEYS_FILE"]).unwrap();
    assert_eq!(recovery.lines().count(), 3);

    // Every parameter the plan requires is in the params file; secret references exist.
    let plan: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(
            twin::bao::repository_root().join("plans/vault-transit-migration.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let params: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&env["PARAMS_FILE"]).unwrap()).unwrap();
    for (name, declaration) in plan["params"].as_object().unwrap() {
        if declaration.get("default").is_none() {
            assert!(
                params.get(name).is_some(),
                "{name} missing from the params file"
            );
        }
    }
    for (name, value) in params.as_object().unwrap() {
        if let Some(path) = value.as_str().and_then(|v| v.strip_prefix("file:")) {
            assert!(std::path::Path::new(path).is_file(), "{name}: {path}");
        }
    }

    let kubectl = Kubectl::new(&dir.join("kubeconfig"));
    for context in ["old", "new"] {
        let pods = kubectl.get_json(&["--context", context, "-n", "vault", "get", "pods"]);
        let phases: Vec<&str> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pod| pod["status"]["phase"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(phases, ["Running", "Running", "Running"], "{context}");
    }

    // Both Vaults answer through their ingress, reached with the RESOLVE pairs.
    let resolve: std::collections::BTreeMap<&str, &str> = env["RESOLVE"]
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .collect();
    for (cluster, host) in [("OLD", "vault.old.test"), ("NEW", "vault.new.test")] {
        let token = std::fs::read_to_string(&env[&format!("{cluster}_ROOT_TOKEN_FILE")]).unwrap();
        let (code, health) = get_through(resolve[host], host, "/v1/sys/health", token.trim());
        assert_eq!(code, 200, "{host}: {health}");
    }
    let old_token = std::fs::read_to_string(&env["OLD_ROOT_TOKEN_FILE"]).unwrap();
    let (code, secret) = get_through(
        resolve["vault.old.test"],
        "vault.old.test",
        "/v1/secret/data/app/s299",
        old_token.trim(),
    );
    assert_eq!(code, 200, "{secret}");
    assert_eq!(secret["data"]["data"]["value"], "v-299");

    let status = stdout(&twin(&["status"], &dir));
    assert_eq!(status.matches("vault-active=true").count(), 2, "{status}");
    assert_eq!(status.matches("vault-sealed=false").count(), 6, "{status}");

    let pids: Vec<i32> = std::fs::read_dir(dir.join("pids"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(pids.len(), 8, "6 Vault pods and 2 key services: {pids:?}");
    assert!(pids.iter().all(|pid| running(*pid)));

    let down = stdout(&twin(&["down"], &dir));
    assert!(down.contains("twin stopped"), "{down}");
    for pid in &pids {
        assert!(!running(*pid), "process {pid} outlived twin down");
    }
    assert_eq!(processes_mentioning(&dir.display().to_string()), Vec::new());
}
