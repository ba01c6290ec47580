//! `planc diff` and the saved plan: golden previews of every plan against captured states, the
//! fidelity of the AKS plan's intermediate states to the seed document, secrets never shown,
//! saved plans that round-trip byte for byte, and located errors for edits that cannot be made.

use std::path::{Path, PathBuf};

use planc::diff_view;
use planc::preview::{self, Previews};
use planc::render::saved_plan;
use planc::state::{self, State};
use planc::{Code, Compilation, CompiledPlan, Diagnostics};
use planc_schema::saved::SavedPlan;
use serde_json::Value;
use workspace_tests::{compile_with_params, expect_file, plan_files, workspace_root};

/// The captured state each plan is previewed against.
fn state_folder(plan: &Path) -> PathBuf {
    let stem = plan.file_stem().and_then(|s| s.to_str()).expect("a name");
    let folder = match stem {
        "vault-aks-migration" | "vault-aks-migration-online" | "vault-aks-migration-live" => "aks",
        "vault-transit-migration"
        | "vault-transit-migration-online"
        | "vault-transit-migration-live" => "transit",
        "vault-seal-rotation" => "rotation",
        "vault-restore" => "restore",
        other => panic!("no state fixture for plans/{other}.yaml: add one under tests/state/"),
    };
    Path::new("tests/state").join(folder)
}

struct Previewed {
    request: planc::CompileRequest,
    compilation: Compilation,
    state: State,
    previews: Previews,
    diagnostics: Diagnostics,
}

impl Previewed {
    fn plan(&self) -> &CompiledPlan {
        self.compilation.plan.as_ref().expect("a clean plan")
    }
}

/// Compile a plan with its example parameters and preview it against a state folder. Paths
/// stay relative to the workspace root, as a person at the root would type them.
fn previewed(plan: &Path, state_dir: &Path) -> Previewed {
    let request = workspace_tests::request_with_params(plan);
    let mut compilation = compile_with_params(plan);
    assert!(!compilation.has_errors(), "{:?}", compilation.diagnostics);
    let files = workspace_tests::state_files(state_dir);
    let mut diagnostics = Diagnostics::default();
    let plan = compilation.plan.clone().expect("clean");
    let state = state::read_state(files, &plan, &mut compilation.sources, &mut diagnostics);
    let previews = preview::preview(&plan, &state, &mut diagnostics);
    Previewed {
        request,
        compilation,
        state,
        previews,
        diagnostics,
    }
}

fn saved_text(p: &Previewed) -> String {
    let mut text = serde_json::to_string_pretty(&saved_plan(
        &p.request,
        p.plan(),
        &p.compilation.sources,
        &p.previews,
    ))
    .unwrap();
    text.push('\n');
    text
}

#[test]
fn every_plan_has_golden_previews() {
    let golden = workspace_root().join("tests/golden");
    for plan in plan_files() {
        let p = previewed(&plan, &state_folder(&plan));
        assert!(
            p.diagnostics.is_empty(),
            "{}: {:?}",
            plan.display(),
            p.diagnostics.iter().collect::<Vec<_>>()
        );
        let stem = plan.file_stem().and_then(|s| s.to_str()).unwrap();
        expect_file(
            &golden.join(format!("{stem}.diff.txt")),
            &diff_view::text(p.plan(), &p.previews.steps, false),
        );
        expect_file(
            &golden.join(format!("{stem}.diff.md")),
            &diff_view::markdown(p.plan(), &p.previews.steps).join("\n"),
        );
        expect_file(&golden.join(format!("{stem}.saved.json")), &saved_text(&p));
    }
}

/// An object of `kind` after a step, read from the unredacted effects.
fn object_after(p: &Previewed, step: &str, kind: &str) -> Value {
    let (effects, _) = preview::apply_edits(p.plan(), &p.state, &mut Diagnostics::default());
    let effect = effects
        .iter()
        .find(|e| e.step == step)
        .unwrap_or_else(|| panic!("no step {step}"));
    let (_, _, after) = effect
        .changes
        .iter()
        .find(|(key, _, _)| key.kind == kind)
        .expect("a change");
    after.clone().expect("kept")
}

/// The configuration of the new Vault after a step.
fn configmap_after(p: &Previewed, step: &str) -> String {
    object_after(p, step, "ConfigMap")["data"]["extraconfig-from-values.hcl"]
        .as_str()
        .expect("text")
        .to_string()
}

/// Seal blocks as (label, attribute -> string value).
fn seals(config: &str) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
    let body = hcl::parse(config).expect("HCL");
    body.blocks()
        .filter(|b| b.identifier.as_str() == "seal")
        .map(|b| {
            let attributes = b
                .body
                .attributes()
                .map(|a| {
                    let value = match &a.expr {
                        hcl::Expression::String(s) => s.clone(),
                        hcl::Expression::Bool(b) => b.to_string(),
                        other => format!("{other:?}"),
                    };
                    (a.key.as_str().to_string(), value)
                })
                .collect();
            (b.labels[0].as_str().to_string(), attributes)
        })
        .collect()
}

fn attributes(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Each intermediate state of the AKS plan is what `vault-aks-migration.md` shows, chapter by
/// chapter, with the seed's placeholders as the example parameters fill them in.
#[test]
fn the_aks_preview_follows_the_seed_document() {
    let p = previewed(
        Path::new("plans/vault-aks-migration.yaml"),
        Path::new("tests/state/aks"),
    );
    let tenant = "00000000-0000-0000-0000-000000000000";
    let msi = "11111111-1111-1111-1111-111111111111";
    // Chapter 4: args to `sleep infinity`.
    let statefulset = object_after(&p, "cutover.disable-old", "StatefulSet");
    assert_eq!(
        statefulset["spec"]["template"]["spec"]["containers"][0]["args"],
        serde_json::json!(["sleep infinity"])
    );
    assert_eq!(
        statefulset["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["/bin/sh", "-ec"])
    );
    // Chapter 6: the seal points at the old key, with the new Vault's identity.
    let old_key = attributes(&[
        ("tenant_id", tenant),
        ("client_id", msi),
        ("vault_name", "kv-vault-old"),
        ("key_name", "vault-unseal-old"),
    ]);
    assert_eq!(
        seals(&configmap_after(&p, "cutover.point-at-old-key")),
        vec![("azurekeyvault".to_string(), old_key.clone())]
    );
    // Chapter 7: the old block disabled, the new one beside it.
    let mut disabled = old_key.clone();
    disabled.insert("disabled".into(), "true".into());
    let new_key = attributes(&[
        ("name", "new"),
        ("tenant_id", tenant),
        ("client_id", msi),
        ("vault_name", "kv-vault-new"),
        ("key_name", "vault-unseal-new"),
    ]);
    assert_eq!(
        seals(&configmap_after(&p, "seal-migration.disable-and-add")),
        vec![
            ("azurekeyvault".to_string(), disabled),
            ("azurekeyvault".to_string(), new_key.clone())
        ]
    );
    // Chapter 10: the disabled block is gone.
    assert_eq!(
        seals(&configmap_after(&p, "seal-migration.remove-disabled")),
        vec![("azurekeyvault".to_string(), new_key)]
    );
    // The rest of the configuration is untouched, byte for byte.
    let final_config = configmap_after(&p, "seal-migration.remove-disabled");
    let original = p
        .state
        .objects
        .iter()
        .find(|(k, _)| k.kind == "ConfigMap" && k.target == "new")
        .unwrap()
        .1["data"]["extraconfig-from-values.hcl"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = original.split("seal \"azurekeyvault\"").next().unwrap();
    assert!(
        final_config.starts_with(prefix)
            && final_config.ends_with("service_registration \"kubernetes\" {}")
    );
    // Chapter 13: the old Ingress through the proxy.
    let ingress = object_after(&p, "proxy.reroute-ingress", "Ingress");
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/backend-protocol"],
        "HTTPS"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/ssl-redirect"],
        "true"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/upstream-vhost"],
        "vault.new.example.com"
    );
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(
        backend,
        &serde_json::json!({"name": "vault-migration-proxy", "port": {"number": 443}})
    );
    // Chapter 12: the proxy objects.
    let slice = object_after(&p, "proxy.proxy", "EndpointSlice");
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "vault-migration-proxy"
    );
    assert_eq!(slice["ports"][0]["name"], "https");
    // Three steps edit one ConfigMap: three successive diffs.
    let configmap_steps: Vec<&str> = p
        .previews
        .steps
        .iter()
        .filter(|s| s.changes.iter().any(|c| c.object.kind == "ConfigMap"))
        .map(|s| s.step.as_str())
        .collect();
    assert_eq!(
        configmap_steps,
        [
            "cutover.point-at-old-key",
            "seal-migration.disable-and-add",
            "seal-migration.remove-disabled"
        ]
    );
}

const PLANTED: &[&str] = &[
    "s.PLANTEDoldKMStoken0123456789",
    "s.PLANTEDnewKMStoken9876543210",
    "UExBTlRFRC1wcml2YXRlLWtleS0wMTIz",
    "UExBTlRFRC1jZXJ0aWZpY2F0ZQ==",
    "PLANTED",
];

/// The transit state holds planted secrets: KMS tokens in both seal blocks, a TLS Secret, and a
/// last-applied annotation that copies a token. No rendering shows any of them.
#[test]
fn no_rendering_shows_a_planted_secret() {
    let p = previewed(
        Path::new("plans/vault-transit-migration.yaml"),
        Path::new("tests/state/transit"),
    );
    let state_text: String = p.state.objects.values().map(|o| o.to_string()).collect();
    for planted in PLANTED {
        assert!(
            state_text.contains(planted),
            "the fixture lost the planted value {planted}"
        );
    }
    let plan = p.plan();
    let renderings = [
        ("text", diff_view::text(plan, &p.previews.steps, false)),
        (
            "colour text",
            diff_view::text(plan, &p.previews.steps, true),
        ),
        (
            "markdown",
            diff_view::markdown(plan, &p.previews.steps).join("\n"),
        ),
        ("json", diff_view::json(plan, &p.previews.steps)),
        ("saved plan", saved_text(&p)),
        (
            "render",
            serde_json::to_string(&planc::render::compiled_plan_json(
                plan,
                &p.compilation.sources,
            ))
            .unwrap(),
        ),
        (
            "graph",
            plan.graph
                .render(&plan.name, planc::graph::GraphFormat::Json),
        ),
    ];
    for (name, rendering) in renderings {
        for planted in PLANTED {
            assert!(
                !rendering.contains(planted),
                "the {name} rendering shows the planted secret {planted}"
            );
        }
    }
    // The changes are still visible as changes.
    let text = diff_view::text(plan, &p.previews.steps, false);
    assert!(
        text.contains("-  token           = \"<redacted #")
            && text.contains("+  token           = \"<redacted #")
    );
}

#[test]
fn saved_plans_round_trip_and_are_stable() {
    let p = previewed(
        Path::new("plans/vault-aks-migration.yaml"),
        Path::new("tests/state/aks"),
    );
    let first = saved_text(&p);
    let again = saved_text(&previewed(
        Path::new("plans/vault-aks-migration.yaml"),
        Path::new("tests/state/aks"),
    ));
    assert_eq!(first, again, "the same inputs must give the same bytes");
    let parsed: SavedPlan = serde_json::from_str(&first).expect("a saved plan reads back");
    let mut rewritten = serde_json::to_string_pretty(&parsed).unwrap();
    rewritten.push('\n');
    assert_eq!(rewritten, first);
    assert_eq!(parsed.format, "planc.saved-plan/v1");
    assert_eq!(parsed.compiled["format"], "planc.compiled-plan/v1");
    // Every object the plan edits was observed with its resourceVersion and digest.
    let observed: Vec<(String, String, Option<String>)> = parsed
        .observed
        .iter()
        .map(|o| {
            (
                o.object.target.clone(),
                format!("{}/{}", o.object.kind, o.object.name),
                o.resource_version.clone(),
            )
        })
        .collect();
    for expected in [
        ("old", "Ingress/vault", Some("4103")),
        ("old", "StatefulSet/vault", Some("4102")),
        ("new", "ConfigMap/vault-config", Some("9301")),
    ] {
        assert!(
            observed.contains(&(
                expected.0.into(),
                expected.1.into(),
                expected.2.map(String::from)
            )),
            "{expected:?} not observed: {observed:?}"
        );
    }
    assert!(parsed.observed.iter().all(|o| o.sha256.len() == 64));
}

#[test]
fn markdown_is_split_into_comments_that_fit() {
    let p = previewed(
        Path::new("plans/vault-aks-migration.yaml"),
        Path::new("tests/state/aks"),
    );
    // Blow one step's diff up far past a comment's size.
    let mut steps = p.previews.steps.clone();
    let big = steps
        .iter_mut()
        .find(|s| s.step == "cutover.disable-old")
        .unwrap();
    let section = &mut big.changes[0].sections[0];
    let line = section.hunks[0].lines[0].clone();
    for index in 0..6_000 {
        let mut copy = line.clone();
        copy.text = format!("{} filler line {index}", copy.text);
        section.hunks[0].lines.push(copy);
    }
    let parts = diff_view::markdown(p.plan(), &steps);
    assert!(parts.len() >= 3, "{} parts", parts.len());
    for (index, part) in parts.iter().enumerate() {
        assert!(
            part.chars().count() <= 65_536,
            "part {} has {} characters",
            index + 1,
            part.chars().count()
        );
        assert!(part.starts_with(&format!(
            "<!-- planc diff: part {} of {} -->",
            index + 1,
            parts.len()
        )));
        assert_eq!(
            part.matches("```").count() % 2,
            0,
            "part {} leaves a code block open",
            index + 1
        );
    }
    let all = parts.join("\n");
    for index in [0, 2_999, 5_999] {
        assert!(
            all.contains(&format!("filler line {index}\n")),
            "line {index} was cut"
        );
    }
    assert!(all.contains("(continued)"));
}

/// Preview errors point at the step and name the object.
#[test]
fn edits_that_cannot_be_made_are_located_errors() {
    // The new cluster's ConfigMap is missing.
    let p = previewed(
        Path::new("plans/vault-aks-migration.yaml"),
        Path::new("tests/state/errors/missing-configmap"),
    );
    let errors: Vec<_> = p.diagnostics.iter().collect();
    let missing = errors
        .iter()
        .find(|d| d.code == Code::ObjectMissing)
        .expect("E020");
    assert_eq!(
        missing.message,
        "step `cutover.point-at-old-key` needs ConfigMap `vault-config` in namespace `vault` of `new`, which is not in the state"
    );
    let span = missing.span.expect("located");
    assert_eq!(
        p.compilation.sources.path(span.file),
        Path::new("plans/modules/cutover.yaml")
    );
    let step_line = std::fs::read_to_string(workspace_root().join("plans/modules/cutover.yaml"))
        .unwrap()
        .lines()
        .position(|l| l.contains("id: point-at-old-key"))
        .unwrap();
    assert_eq!(span.line as usize, step_line + 1);
    assert!(
        missing
            .help
            .as_deref()
            .unwrap()
            .contains("kubectl --context aks-new -n vault get configmap vault-config -o yaml")
    );

    // The seal block is of another type, and the Ingress has no backend on vault-active.
    let p = previewed(
        Path::new("plans/vault-aks-migration.yaml"),
        Path::new("tests/state/errors/wrong-seal-and-backend"),
    );
    let messages: Vec<String> = p
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::EditImpossible)
        .map(|d| d.message.clone())
        .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("step `cutover.point-at-old-key` cannot change ConfigMap `vault-config` of `new`: in key `extraconfig-from-values.hcl`: no seal \"azurekeyvault\" found; the configuration has seal \"awskms\"")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m == "step `proxy.reroute-ingress` cannot change Ingress `vault` of `old`: the Ingress has no backend on service `vault-active`; its backends are web"),
        "{messages:#?}"
    );
}

#[test]
fn the_restore_plan_removes_a_proxy_that_was_never_created_without_an_error() {
    // The failed run stopped before chapter 12: the old cluster has no migration proxy.
    let p = previewed(
        Path::new("plans/vault-restore.yaml"),
        Path::new("tests/state/restore-without-proxy"),
    );
    let errors: Vec<_> = p.diagnostics.iter().collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let notes: Vec<&String> = p
        .previews
        .steps
        .iter()
        .filter(|s| s.step.contains("proxy"))
        .flat_map(|s| &s.notes)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str()
                == "Service `vault-migration-proxy` does not exist: nothing to delete"),
        "{notes:#?}"
    );
}
