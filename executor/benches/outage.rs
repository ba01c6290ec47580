//! Outage benchmark: the transit migration plans (faithful, online, live) on fresh twins (real
//! OpenBao pods). Through each run the twin's write probe writes every 50 ms through the old
//! domain (the ingress) and through the old cluster's `vault-active` ClusterIP (an in-cluster
//! client). Per run: planx's total, the outage window planx reports and the part of it spent
//! waiting on the servers (pod restarts, elections, seal changes), and per probe path the longest
//! window without an acknowledged write, the writes lost (acknowledged, then missing from the new
//! Vault) and whether the path serves again at the end. Then the medians per plan and the ratios
//! to the faithful plan. Prints tables, never asserts. Run with
//! `cargo bench -p planx --bench outage` (`PLANX_BENCH_RUNS`, default 3; `PLANX_BENCH_PLANS`,
//! a comma-separated subset of `faithful,online,live`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use twin::httpc::Endpoint;
use twin::probe::{PathLog, PathReport, ProbePath, WriteProbe};
use twin::scenario::{Scenario, ScenarioFiles, ScenarioOptions};

/// A plan the bench runs: its label, its file under `plans/`, its parameter files and the
/// scenario it needs.
struct BenchPlan {
    label: &'static str,
    file: &'static str,
    params: fn(&ScenarioFiles) -> Vec<PathBuf>,
    scenario: fn() -> ScenarioOptions,
}

const PLANS: &[BenchPlan] = &[
    BenchPlan {
        label: "faithful",
        file: "vault-transit-migration.yaml",
        params: |files| vec![files.params()],
        scenario: ScenarioOptions::vault_pair,
    },
    BenchPlan {
        label: "online",
        file: "vault-transit-migration-online.yaml",
        params: |files| vec![files.params(), files.online_params()],
        scenario: ScenarioOptions::vault_pair,
    },
    BenchPlan {
        label: "live",
        file: "vault-transit-migration-live.yaml",
        params: |files| vec![files.params()],
        scenario: ScenarioOptions::vault_pair_live,
    },
];

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
    let chosen: Option<Vec<String>> = std::env::var("PLANX_BENCH_PLANS")
        .ok()
        .map(|list| list.split(',').map(|p| p.trim().to_string()).collect());
    let plans: Vec<&BenchPlan> = PLANS
        .iter()
        .filter(|p| {
            chosen
                .as_ref()
                .is_none_or(|c| c.iter().any(|c| c == p.label))
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let started = Instant::now();
    let mut measured: Vec<(&BenchPlan, Vec<Measured>)> = Vec::new();
    for plan in plans {
        let results = (1..=runs)
            .map(|run| runtime.block_on(migrate(plan, run)))
            .collect();
        measured.push((plan, results));
    }
    println!(
        "| plan | run | planx total s | outage window s | waiting on servers s | path | writes | acknowledged | lost | longest window s | from s | serves at the end | first refusal |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|");
    for (plan, results) in &measured {
        for (run, result) in results.iter().enumerate() {
            let (total, outage, waits) = result.summary;
            for (report, serving, refusal) in &result.paths {
                println!(
                    "| {} | {} | {total:.1} | {outage:.1} | {waits:.1} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {} |",
                    plan.label,
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
                        "no (until the probe stopped)"
                    },
                    refusal.as_deref().unwrap_or("none"),
                );
            }
        }
    }
    println!("\nmedians of {runs} run(s) per plan; ratios to the faithful plan's median\n");
    println!(
        "| plan | old domain window s | ratio | vault-active ClusterIP window s | ratio | acknowledged writes lost (all runs) | planx total s | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let medians: Vec<(&str, [f64; 3], usize)> = measured
        .iter()
        .map(|(plan, results)| {
            let window = |path: usize| {
                median(
                    results
                        .iter()
                        .map(|r| r.paths[path].0.longest_window.as_secs_f64()),
                )
            };
            let lost = results
                .iter()
                .flat_map(|r| &r.paths)
                .map(|(report, _, _)| report.lost.len())
                .sum();
            let total = median(results.iter().map(|r| r.summary.0));
            (plan.label, [window(0), window(1), total], lost)
        })
        .collect();
    let faithful = medians
        .iter()
        .find(|(label, _, _)| *label == "faithful")
        .map(|(_, values, _)| *values);
    for (label, values, lost) in &medians {
        let ratio = |i: usize| match faithful {
            Some(base) => format!("{:.2}x", values[i] / base[i]),
            None => "-".into(),
        };
        println!(
            "| {label} | {:.2} | {} | {:.2} | {} | {lost} | {:.1} | {} |",
            values[0],
            ratio(0),
            values[1],
            ratio(1),
            values[2],
            ratio(2)
        );
    }
    for (plan, results) in &measured {
        if let Some(last) = results.last() {
            println!(
                "\nthe slowest steps of the last {} run (seconds, waits included):",
                plan.label
            );
            for (step, secs) in last.steps.iter().take(8) {
                println!("  {secs:>6.2}  {step}");
            }
        }
    }
    println!("\nwall time {:.0}s", started.elapsed().as_secs_f64());
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One migration on a fresh twin, with the write probe running through it.
async fn migrate(plan: &BenchPlan, run: usize) -> Measured {
    let dir = std::env::temp_dir().join(format!(
        "planx-bench-outage-{}-{}-{run}",
        std::process::id(),
        plan.label
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a bench folder");
    let scenario = Scenario::start_async((plan.scenario)().dir(&dir.join("twin")))
        .await
        .expect("the scenario starts");
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
        .arg(root().join("plans").join(plan.file));
    for file in (plan.params)(&scenario.files()) {
        command.arg("--params").arg(file);
    }
    command
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
