//! Outage benchmark: the full transit migration on fresh twins (real OpenBao pods), the outage
//! window planx reports against the part of it spent waiting on the servers (pod restarts,
//! elections, seal changes); what remains is what the executor adds. Through each run the twin's
//! write probe writes every 50 ms through the old domain (the ingress) and through the old
//! cluster's `vault-active` ClusterIP (an in-cluster client); a second table gives, per path, the
//! longest window without an acknowledged write, the writes lost (acknowledged, then missing
//! from the new Vault) and whether the path serves again at the end. Prints tables, never
//! asserts. Run with `cargo bench -p planx --bench outage` (`PLANX_BENCH_RUNS`, default 3).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use twin::httpc::Endpoint;
use twin::probe::{PathLog, PathReport, ProbePath, WriteProbe};
use twin::scenario::{Scenario, ScenarioOptions};

/// What one migration measured.
struct Measured {
    /// planx's total, outage window and waits, in seconds.
    summary: (f64, f64, f64),
    /// Every step's duration, slowest first.
    steps: Vec<(String, f64)>,
    /// Per probe path: its report, whether its last write was acknowledged, and the first
    /// refusal it got.
    paths: Vec<(PathReport, bool, Option<String>)>,
}

fn main() {
    let runs: usize = std::env::var("PLANX_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut slowest = Vec::new();
    let mut probes = Vec::new();
    for run in 1..=runs {
        let measured = runtime.block_on(migrate(run));
        rows.push(measured.summary);
        slowest = measured.steps;
        probes.push(measured.paths);
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
    println!(
        "\nclients writing every 50 ms during each run, per path: the longest window without an acknowledged write, writes acknowledged and lost, and whether the path serves at the end\n"
    );
    println!(
        "| run | path | writes | acknowledged | lost | longest window s | from s | serves at the end | first refusal |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---|---|");
    for (run, paths) in probes.iter().enumerate() {
        for (report, serving, refusal) in paths {
            println!(
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {} |",
                run + 1,
                report.name,
                report.writes,
                report.acknowledged,
                report.lost.len(),
                report.longest_window.as_secs_f64(),
                report.window_from.as_secs_f64(),
                if *serving {
                    "yes"
                } else {
                    "no (the window lasts until the probe stopped)"
                },
                refusal.as_deref().unwrap_or("none"),
            );
        }
    }
}

/// One migration on a fresh twin, with the write probe running through it.
async fn migrate(run: usize) -> Measured {
    let dir = std::env::temp_dir().join(format!("planx-bench-outage-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a bench folder");
    let scenario = Scenario::start_async(ScenarioOptions::vault_pair().dir(&dir.join("twin")))
        .await
        .expect("the vault-pair scenario starts");
    let old = scenario.vault("old");
    let token = old.root_token().expect("the old root token").to_string();
    let in_cluster = scenario
        .twin()
        .cluster("old")
        .service_address("vault", "vault-active", 8200)
        .expect("vault-active has a ClusterIP");
    let probe = WriteProbe::start(
        vec![
            ProbePath {
                name: "old-domain".into(),
                endpoint: old.ingress_endpoint("http").expect("the old gateway"),
            },
            ProbePath {
                name: "old-vault-active-clusterip".into(),
                endpoint: Endpoint::plain(in_cluster),
            },
        ],
        &token,
        std::time::Duration::from_millis(50),
    );
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
    let logs = probe.stop().await;
    let new = scenario
        .vault("new")
        .ingress_endpoint("http")
        .expect("the new gateway");
    let reports = twin::probe::check(&logs, &new, &token).await;
    let paths = reports
        .into_iter()
        .zip(&logs)
        .map(|(report, log)| {
            let refusal = log.attempts.iter().find_map(|a| a.refused.clone());
            (report, serves_at_the_end(log), refusal)
        })
        .collect();
    drop(scenario);
    std::fs::remove_dir_all(&dir).ok();
    let number = |key: &str| summary[key].as_f64().unwrap_or(f64::NAN);
    Measured {
        summary: (
            number("total_secs"),
            number("outage_secs"),
            number("outage_waits_secs"),
        ),
        steps,
        paths,
    }
}

/// Whether the last write of a path was acknowledged.
fn serves_at_the_end(log: &PathLog) -> bool {
    log.attempts.last().is_some_and(|a| a.refused.is_none())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}
