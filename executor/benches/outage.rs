//! Outage benchmark: the full transit migration on fresh twins (real OpenBao pods), the outage
//! window planx reports against the part of it spent waiting on the servers (pod restarts,
//! elections, seal changes); what remains is what the executor adds. Prints a table, never
//! asserts. Run with `cargo bench -p planx --bench outage` (`PLANX_BENCH_RUNS`, default 3).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use twin::scenario::{Scenario, ScenarioOptions};

fn main() {
    let runs: usize = std::env::var("PLANX_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut slowest = Vec::new();
    for run in 1..=runs {
        let (summary, steps) = runtime.block_on(migrate(run));
        rows.push(summary);
        slowest = steps;
    }
    println!(
        "| run | planx total s | outage window s | waiting on servers s | added by planx s | share |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut shares = Vec::new();
    for (run, (total, outage, waits)) in rows.iter().enumerate() {
        let added = outage - waits;
        shares.push(added / outage);
        println!(
            "| {} | {total:.1} | {outage:.1} | {waits:.1} | {added:.2} | {:.1}% |",
            run + 1,
            100.0 * added / outage
        );
    }
    shares.sort_by(f64::total_cmp);
    println!(
        "\nmedian share added by planx: {:.1}%; wall time {:.0}s",
        100.0 * shares[shares.len() / 2],
        started.elapsed().as_secs_f64()
    );
    println!("\nthe slowest steps of the last run (seconds, waits included):");
    for (step, secs) in slowest.iter().take(8) {
        println!("  {secs:>6.2}  {step}");
    }
}

/// One migration on a fresh twin: (total, outage, waits) and every step's duration, slowest first.
async fn migrate(run: usize) -> ((f64, f64, f64), Vec<(String, f64)>) {
    let dir = std::env::temp_dir().join(format!("planx-bench-outage-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a bench folder");
    let scenario = Scenario::start_async(ScenarioOptions::vault_pair().dir(&dir.join("twin")))
        .await
        .expect("the vault-pair scenario starts");
    let mut command = Command::new(env!("CARGO_BIN_EXE_planx"));
    command
        .arg("apply")
        .arg(root().join("plans/vault-transit-migration.yaml"))
        .arg("--params")
        .arg(scenario.files().params())
        .args(["--approve-all", "--yes", "--output", "json"])
        .current_dir(&dir)
        .env("KUBECONFIG", scenario.twin().kubeconfig_path());
    for (host, address) in scenario.resolve_pairs("http") {
        command.arg("--resolve").arg(format!("{host}={address}"));
    }
    let out = command.output().expect("planx runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let summary = events
        .iter()
        .find(|e| e["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    assert_eq!(summary["outcome"], "completed", "{stdout}");
    let mut steps: Vec<(String, f64)> = events
        .iter()
        .filter(|e| e["event"] == "ok")
        .filter_map(|e| {
            let secs = e["detail"].as_str()?.trim_end_matches('s').parse().ok()?;
            Some((e["step"].as_str()?.to_string(), secs))
        })
        .collect();
    steps.sort_by(|a, b| b.1.total_cmp(&a.1));
    drop(scenario);
    std::fs::remove_dir_all(&dir).ok();
    let number = |key: &str| summary[key].as_f64().unwrap_or(f64::NAN);
    (
        (
            number("total_secs"),
            number("outage_secs"),
            number("outage_waits_secs"),
        ),
        steps,
    )
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}
