//! The compiled plan as JSON (`planc render`): resolved parameters with secrets as references,
//! targets, steps with resolved inputs and what each action is, and the graph; with a captured
//! state, the saved plan that adds the previews and what was observed.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::catalog;
use crate::model::CompiledPlan;
use crate::source::SourceMap;
use crate::syntax::param_type_name;

/// Identifies the rendering's format; bump the version on any incompatible change.
pub const COMPILED_PLAN_FORMAT: &str = "planc.compiled-plan/v1";

pub fn compiled_plan_json(plan: &CompiledPlan, sources: &SourceMap) -> Value {
    let reduced = plan.graph.reduced_deps();
    let params: Vec<Value> = plan
        .params
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "type": param_type_name(p.param_type),
                "value": p.value.to_json(),
            })
        })
        .collect();
    let targets: serde_json::Map<String, Value> = plan
        .targets
        .values()
        .map(|t| {
            let mut object = serde_json::Map::new();
            object.insert("kind".into(), json!(t.kind.name()));
            for (name, value) in &t.attributes {
                object.insert(name.clone(), value.to_json());
            }
            (t.id.clone(), Value::Object(object))
        })
        .collect();
    let steps: Vec<Value> = plan
        .graph
        .order
        .iter()
        .map(|&index| {
            let step = &plan.steps[index];
            let spec = catalog::spec(step.action);
            let mut object = json!({
                "id": step.id,
                "uses": step.action.name(),
                "on": step.on,
                "side_effect": spec.side_effect.as_str(),
                "undo": spec.undo,
                "with": step.with.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
                "needs": reduced[index].iter().map(|&d| plan.steps[d].id.clone()).collect::<Vec<_>>(),
                "outputs": spec.outputs.iter().map(|o| o.name).collect::<Vec<_>>(),
                "source": format!("{}:{}:{}", sources.path(step.span.file).display(), step.span.line, step.span.column),
            });
            if let Some(description) = &step.description {
                object["description"] = json!(description);
            }
            if let Some(for_each) = &step.for_each {
                object["for_each"] = for_each.to_json();
            }
            if let Some(timeout) = step.timeout_secs {
                object["timeout_secs"] = json!(timeout);
            }
            if let Some(retry) = &step.retry {
                object["retry"] = json!({ "attempts": retry.attempts, "backoff_secs": retry.backoff_secs });
            }
            if let Some(gate) = &step.gate {
                object["gate"] = json!(gate);
            }
            object
        })
        .collect();
    json!({
        "format": COMPILED_PLAN_FORMAT,
        "plan": { "name": plan.name, "description": plan.description },
        "params": params,
        "targets": targets,
        "steps": steps,
        "graph": plan.graph.to_json(),
    })
}

/// The saved plan: what it was compiled from, the compiled plan, its previews and what was
/// observed, without a secret value.
pub fn saved_plan(
    request: &crate::CompileRequest,
    plan: &CompiledPlan,
    sources: &SourceMap,
    previews: &crate::preview::Previews,
) -> planc_schema::saved::SavedPlan {
    let path = |p: &std::path::PathBuf| p.to_string_lossy().to_string();
    planc_schema::saved::SavedPlan {
        format: planc_schema::saved::SAVED_PLAN_FORMAT.to_string(),
        request: planc_schema::saved::SavedRequest {
            plan: path(&request.plan),
            params_files: request.params_files.iter().map(path).collect(),
            set: request.set.clone(),
        },
        compiled: compiled_plan_json(plan, sources),
        observed: previews.observed.clone(),
        previews: previews.steps.clone(),
    }
}

/// SHA-256 of a compiled plan's rendering with source positions left out (they do not change
/// what runs): equal digests mean the same steps with the same inputs.
pub fn compiled_digest(rendering: &Value) -> String {
    let mut rendering = rendering.clone();
    // `get_mut`, not indexing: a damaged saved plan may hold anything here, even no mapping.
    if let Some(steps) = rendering.get_mut("steps").and_then(Value::as_array_mut) {
        for step in steps {
            if let Some(step) = step.as_object_mut() {
                step.remove("source");
            }
        }
    }
    let text = serde_json::to_string(&rendering).expect("renders");
    crate::hex::encode(&Sha256::digest(text.as_bytes()))
}
