//! Benchmark: `planc check` on generated fleet plans of 1,000 / 10,000 / 30,000 steps, beside
//! the bare serde-saphyr parse of the same text. Prints a table; asserts nothing about time.
//!
//! Run with `cargo bench -p planc`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
        "version: 1\nname: fleet\ndescription: generated for the benchmark\nparams:\n  namespace:\n    type: string\n    default: vault\n  token:\n    type: secret\n    default: env:VAULT_TOKEN\n  replicas:\n    type: integer\n    default: 3\ntargets:\n",
    );
    for v in 0..vaults {
        text.push_str(&format!(
            "  k{v}:\n    kind: kubernetes\n    context: \"cluster-{v}\"\n    namespace: \"{{{{ params.namespace }}}}\"\n  v{v}:\n    kind: vault\n    cluster: k{v}\n    url: \"https://vault-{v}.example.com\"\n"
        ));
    }
    text.push_str("steps:\n");
    for v in 0..vaults {
        text.push_str(&format!(
            r#"  - id: replicas-{v}
    uses: preflight.replicas
    on: v{v}
    with:
      expected: "{{{{ params.replicas }}}}"
  - id: backup-ingress-{v}
    uses: k8s.backup
    on: k{v}
    with: {{kind: Ingress, name: "{{{{ targets.v{v}.ingress }}}}"}}
    needs: [replicas-{v}]
  - id: block-{v}
    uses: k8s.delete
    on: k{v}
    with: {{kind: Ingress, name: vault}}
    needs: [backup-ingress-{v}]
  - id: snapshot-{v}
    uses: vault.snapshot-save
    on: v{v}
    with:
      token: "{{{{ params.token }}}}"
    needs: [block-{v}]
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
