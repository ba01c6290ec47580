//! Benchmark: `planc check` on generated plans beside the bare serde-saphyr parse of the same
//! text: clean fleet plans of 1,000 / 10,000 / 30,000 steps, then error-heavy plans (every step
//! wrong, every reference dangling, one cycle through every step, every id the same) of 1,000 to
//! 200,000 steps, checked and reported in every format. Prints tables; asserts nothing about time.
//!
//! Run with `cargo bench -p planc`; `PLANC_BENCH_SIZES=1000,10000` picks the error-heavy sizes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use planc::report::{self, ReportFormat};
use planc::{CompileRequest, Loader};

/// Serves one generated plan from memory.
struct Generated {
    path: PathBuf,
    text: String,
}

impl Loader for Generated {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        if path == self.path {
            Ok(self.text.clone())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not generated",
            ))
        }
    }
}

/// A fleet of independent Vault moves, 10 steps each, with expressions, step outputs, a
/// `for_each` group and every ordering rule in play.
fn fleet_plan(steps: usize) -> String {
    let vaults = steps / 10;
    let mut text = String::from(
        "version: 1\nname: fleet\ndescription: generated for the benchmark\nparams:\n  namespace:\n    type: string\n    default: vault\n  token:\n    type: secret\n    default: env:VAULT_TOKEN\ntargets:\n",
    );
    for v in 0..vaults {
        text.push_str(&format!(
            "  k{v}:\n    kind: kubernetes\n    context: \"cluster-{v}\"\n    namespace: \"{{{{ params.namespace }}}}\"\n  v{v}:\n    kind: vault\n    cluster: k{v}\n    url: \"https://vault-{v}.example.com\"\n"
        ));
    }
    text.push_str("steps:\n");
    for v in 0..vaults {
        text.push_str(&format!(
            r#"  - id: backup-ingress-{v}
    uses: k8s.backup
    on: k{v}
    with: {{kind: Ingress, name: "{{{{ targets.v{v}.ingress }}}}"}}
  - id: block-{v}
    uses: k8s.delete
    on: k{v}
    with: {{kind: Ingress, name: vault}}
    needs: [backup-ingress-{v}]
  - id: block-services-{v}
    uses: vault.block-services
    on: v{v}
    needs: [block-{v}]
  - id: snapshot-{v}
    uses: vault.snapshot-save
    on: v{v}
    with:
      token: "{{{{ params.token }}}}"
    needs: [block-services-{v}]
  - id: backup-sts-{v}
    uses: k8s.backup
    on: k{v}
    with: {{kind: StatefulSet, name: vault}}
  - id: disable-{v}
    uses: k8s.patch-args
    on: k{v}
    with:
      statefulset: vault
      args: [sleep infinity]
    needs: [snapshot-{v}, backup-sts-{v}]
  - id: restart-{v}
    uses: vault.restart
    on: v{v}
    with: {{pods: all, wait: running}}
    needs: [disable-{v}]
    timeout: 3m
  - id: leader-{v}
    uses: vault.leader
    on: v{v}
    needs: [restart-{v}]
  - id: followers-{v}
    uses: vault.restart
    on: v{v}
    for_each: "{{{{ steps.leader-{v}.outputs.followers }}}}"
    with:
      pod: "{{{{ item }}}}"
  - id: verify-{v}
    uses: vault.verify
    on: v{v}
    with:
      urls: ["{{{{ targets.v{v}.url }}}}"]
      token: "{{{{ params.token }}}}"
    needs: [followers-{v}]
"#
        ));
    }
    text
}

/// Plans where every step is wrong in one way, to time the error paths.
#[derive(Clone, Copy)]
enum Broken {
    /// Every step uses an action that is not in the catalog.
    UnknownAction,
    /// Every step needs a step that does not exist (so each gets a suggestion search).
    DanglingNeeds,
    /// Step i needs step i+1 and the last needs the first: one cycle through every step.
    Cycle,
    /// Every step has the same id.
    DuplicateIds,
}

impl Broken {
    const ALL: [Broken; 4] = [
        Broken::UnknownAction,
        Broken::DanglingNeeds,
        Broken::Cycle,
        Broken::DuplicateIds,
    ];

    fn name(self) -> &'static str {
        match self {
            Broken::UnknownAction => "every action unknown",
            Broken::DanglingNeeds => "every need dangling",
            Broken::Cycle => "one cycle through all",
            Broken::DuplicateIds => "every id the same",
        }
    }

    fn plan(self, steps: usize) -> String {
        let mut text = String::from(
            "version: 1\nname: broken\ntargets:\n  k:\n    kind: kubernetes\n    context: old\n    namespace: vault\nsteps:\n",
        );
        for i in 0..steps {
            let step = match self {
                Broken::UnknownAction => {
                    format!("  - id: s-{i}\n    uses: k8s.nope-{i}\n    on: k\n")
                }
                Broken::DanglingNeeds => format!(
                    "  - id: s-{i}\n    uses: k8s.backup\n    on: k\n    with: {{kind: Ingress, name: vault}}\n    needs: [missing-{i}]\n"
                ),
                Broken::Cycle => format!(
                    "  - id: s-{i}\n    uses: k8s.backup\n    on: k\n    with: {{kind: Ingress, name: vault}}\n    needs: [s-{}]\n",
                    (i + 1) % steps
                ),
                Broken::DuplicateIds => "  - id: same\n    uses: k8s.backup\n    on: k\n    with: {kind: Ingress, name: vault}\n".to_string(),
            };
            text.push_str(&step);
        }
        text
    }
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .min()
        .expect("at least one run")
}

fn main() {
    clean_fleet();
    error_heavy();
}

fn clean_fleet() {
    println!("| steps  | plan size | bare parse (serde-saphyr) | planc check | check / parse |");
    println!("|-------:|----------:|--------------------------:|------------:|--------------:|");
    for steps in [1_000, 10_000, 30_000] {
        let text = fleet_plan(steps);
        let loader = Generated {
            path: PathBuf::from("fleet.yaml"),
            text: text.clone(),
        };
        let request = CompileRequest {
            plan: loader.path.clone(),
            ..Default::default()
        };
        let compilation = planc::compile(&request, &loader).expect("in memory");
        assert!(
            !compilation.has_errors(),
            "the generated plan must be clean: {:?}",
            compilation.diagnostics.first()
        );
        assert_eq!(
            compilation.plan.as_ref().map(|p| p.steps.len()),
            Some(steps)
        );
        let runs = if steps >= 30_000 { 3 } else { 5 };
        let parse = best_of(runs, || {
            serde_saphyr::from_str_with_options::<serde_json::Value>(&text, planc::yaml::options())
                .expect("parses")
        });
        let check = best_of(runs, || {
            planc::compile(&request, &loader).expect("compiles")
        });
        println!(
            "| {steps:>6} | {:>6.1} MB | {:>22.1} ms | {:>8.1} ms | {:>12.2}x |",
            text.len() as f64 / 1e6,
            parse.as_secs_f64() * 1e3,
            check.as_secs_f64() * 1e3,
            check.as_secs_f64() / parse.as_secs_f64()
        );
    }
}

fn error_heavy() {
    let sizes: Vec<usize> = std::env::var("PLANC_BENCH_SIZES")
        .ok()
        .map(|list| {
            list.split(',')
                .map(|n| n.trim().parse().expect("PLANC_BENCH_SIZES: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000, 200_000]);
    println!();
    println!(
        "| error-heavy plan      |  steps | plan size | diagnostics | bare parse | check    | human    | json     | github   | check+human / parse |"
    );
    println!(
        "|-----------------------|-------:|----------:|------------:|-----------:|---------:|---------:|---------:|---------:|--------------------:|"
    );
    for broken in Broken::ALL {
        for &steps in &sizes {
            let text = broken.plan(steps);
            let loader = Generated {
                path: PathBuf::from("broken.yaml"),
                text: text.clone(),
            };
            let request = CompileRequest {
                plan: loader.path.clone(),
                ..Default::default()
            };
            let runs = if steps >= 100_000 { 1 } else { 3 };
            let parse = best_of(runs, || {
                serde_saphyr::from_str_with_options::<serde_json::Value>(
                    &text,
                    planc::yaml::options(),
                )
                .expect("parses")
            });
            let mut compilation = None;
            let check = best_of(runs, || {
                compilation = Some(planc::compile(&request, &loader).expect("compiles"));
            });
            let compilation = compilation.expect("compiled once");
            assert!(
                compilation.has_errors(),
                "{} must have errors",
                broken.name()
            );
            let render = |format| {
                best_of(runs, || {
                    report::render(
                        &compilation.diagnostics,
                        &compilation.sources,
                        format,
                        &report::Options::all_shown(),
                    )
                })
            };
            let human = render(ReportFormat::Human);
            let json = render(ReportFormat::Json);
            let github = render(ReportFormat::Github);
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "| {:<21} | {steps:>6} | {:>6.1} MB | {:>11} | {:>7.0} ms | {:>5.0} ms | {:>5.0} ms | {:>5.0} ms | {:>5.0} ms | {:>18.2}x |",
                broken.name(),
                text.len() as f64 / 1e6,
                compilation.diagnostics.len(),
                ms(parse),
                ms(check),
                ms(human),
                ms(json),
                ms(github),
                (check + human).as_secs_f64() / parse.as_secs_f64(),
            );
        }
    }
}
