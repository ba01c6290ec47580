//! The four patch types: JSON merge, JSON patch, strategic merge, and apply (as strategic merge).
//!
//! Strategic merge knows the merge keys of the lists in the types the twin serves (containers,
//! volumes, env, ports, volumeMounts, conditions, ownerReferences ...) and the directives kubectl
//! sends (`$patch`, `$setElementOrder/<list>`, `$retainKeys`, `$deleteFromPrimitiveList/<list>`);
//! lists without a merge key are replaced whole, as in Kubernetes.

use serde_json::{Map, Value};

/// The patch types of `PATCH` requests, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        match media_type {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch, applied atomically (`test` failures leave `target` unchanged).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|error| format!("invalid JSON patch: {error}"))?;
    json_patch::patch(target, &operations).map_err(|error| error.to_string())
}

/// Strategic merge patch of `patch` into `target`, an object of kind `kind`.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value, kind: &str) -> Result<(), String> {
    let Some(patch_map) = patch.as_object() else {
        return Err("a strategic merge patch must be a JSON object".to_string());
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let mut path = Vec::new();
    if let Value::Object(target_map) = target {
        merge_map(target_map, patch_map, &mut path, kind)?;
    }
    Ok(())
}

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

fn merge_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
    kind: &str,
) -> Result<(), String> {
    match patch.get(PATCH_DIRECTIVE).and_then(Value::as_str) {
        Some("replace") => {
            *target = without_directives_map(patch);
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch directive {other:?}")),
    }
    let mut element_orders = Vec::new();
    for (key, value) in patch {
        if key == PATCH_DIRECTIVE || key == RETAIN_KEYS {
            continue;
        }
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            element_orders.push((field.to_string(), value));
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let removed = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = target.get_mut(field) {
                items.retain(|item| !removed.contains(item));
            }
            continue;
        }
        if value.is_null() {
            target.remove(key);
            continue;
        }
        path.push(key.clone());
        let result = merge_field(target, key, value, path, kind);
        path.pop();
        result?;
    }
    if let Some(Value::Array(retained)) = patch.get(RETAIN_KEYS) {
        target.retain(|key, _| retained.iter().any(|r| r.as_str() == Some(key)));
    }
    for (field, order) in element_orders {
        path.push(field.clone());
        let key = merge_key(path, kind);
        path.pop();
        if let (Some(Value::Array(items)), Some(order)) = (target.get_mut(&field), order.as_array())
        {
            apply_element_order(items, order, key);
        }
    }
    Ok(())
}

fn merge_field(
    target: &mut Map<String, Value>,
    key: &str,
    value: &Value,
    path: &mut Vec<String>,
    kind: &str,
) -> Result<(), String> {
    match (target.get_mut(key), value) {
        (Some(Value::Object(existing)), Value::Object(patch_map)) => {
            if patch_map.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                target.remove(key);
                return Ok(());
            }
            merge_map(existing, patch_map, path, kind)
        }
        (Some(Value::Array(existing)), Value::Array(patch_items)) => {
            merge_list(existing, patch_items, path, kind)
        }
        (_, Value::Object(patch_map)) => {
            if patch_map.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                target.remove(key);
                return Ok(());
            }
            let mut fresh = Map::new();
            merge_map(&mut fresh, patch_map, path, kind)?;
            target.insert(key.to_string(), Value::Object(fresh));
            Ok(())
        }
        (_, Value::Array(patch_items)) => {
            let mut items = Vec::new();
            merge_list(&mut items, patch_items, path, kind)?;
            target.insert(key.to_string(), Value::Array(items));
            Ok(())
        }
        _ => {
            target.insert(key.to_string(), value.clone());
            Ok(())
        }
    }
}

fn merge_list(
    target: &mut Vec<Value>,
    patch: &[Value],
    path: &mut Vec<String>,
    kind: &str,
) -> Result<(), String> {
    let replace_all = patch
        .iter()
        .any(|item| item.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("replace"));
    let field = path.last().map(String::as_str).unwrap_or("");
    let Some(key) = merge_key(path, kind).filter(|_| !replace_all) else {
        if !replace_all && PRIMITIVE_MERGE_LISTS.contains(&field) {
            for item in patch {
                if !target.contains(item) {
                    target.push(item.clone());
                }
            }
            return Ok(());
        }
        *target = patch
            .iter()
            .filter(|item| item.get(PATCH_DIRECTIVE).is_none())
            .map(without_directives)
            .collect();
        return Ok(());
    };
    for item in patch {
        let Some(item_map) = item.as_object() else {
            target.push(item.clone());
            continue;
        };
        let Some(key_value) = item_map.get(key) else {
            return Err(format!(
                "map in list {} does not contain the merge key {key:?}",
                path.join(".")
            ));
        };
        let position = target
            .iter()
            .position(|existing| existing.get(key) == Some(key_value));
        let delete = item_map.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(index), true) => {
                target.remove(index);
            }
            (None, true) => {}
            (Some(index), false) => {
                if let Value::Object(existing) = &mut target[index] {
                    merge_map(existing, item_map, path, kind)?;
                }
            }
            (None, false) => target.push(without_directives(item)),
        }
    }
    Ok(())
}

/// Lists of scalars that strategic merge unions instead of replacing.
const PRIMITIVE_MERGE_LISTS: &[&str] = &["finalizers"];

/// The merge key of the list at `path` (field names from the object's root), if it has one.
fn merge_key(path: &[String], kind: &str) -> Option<&'static str> {
    let field = path.last()?.as_str();
    let in_container = path[..path.len() - 1].iter().any(|segment| {
        matches!(
            segment.as_str(),
            "containers" | "initContainers" | "ephemeralContainers"
        )
    });
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "ownerReferences" => Some("uid"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "conditions" if path.first().map(String::as_str) == Some("status") => Some("type"),
        "ports" if in_container => Some("containerPort"),
        "ports" if kind == "Service" && path.len() == 2 && path[0] == "spec" => Some("port"),
        _ => None,
    }
}

fn apply_element_order(items: &mut [Value], order: &[Value], key: Option<&str>) {
    let identity = |item: &Value| -> Value {
        match key {
            Some(key) => item.get(key).cloned().unwrap_or(Value::Null),
            None => item.clone(),
        }
    };
    let rank = |item: &Value| -> usize {
        let id = identity(item);
        order
            .iter()
            .position(|o| match key {
                Some(key) => o.get(key) == Some(&id),
                None => *o == id,
            })
            .unwrap_or(order.len())
    };
    items.sort_by_key(|item| rank(item));
}

/// `value` without strategic merge directives and without null map entries.
pub fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(without_directives_map(map)),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

fn without_directives_map(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(key, value)| !key.starts_with('$') && !value.is_null())
        .map(|(key, value)| (key.clone(), without_directives(value)))
        .collect()
}

/// A minimal `fieldsV1` description of the fields an applied configuration sets.
pub fn fields_v1(applied: &Value, kind: &str) -> Value {
    let mut path = Vec::new();
    match applied {
        Value::Object(map) => {
            let mut fields = Map::new();
            for (key, value) in map {
                if key == "apiVersion" || key == "kind" {
                    continue;
                }
                if key == "metadata" {
                    let mut metadata = Map::new();
                    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(value) = value.get(field) {
                            path.push("metadata".to_string());
                            path.push(field.to_string());
                            metadata
                                .insert(format!("f:{field}"), field_set(value, &mut path, kind));
                            path.truncate(0);
                        }
                    }
                    fields.insert("f:metadata".to_string(), Value::Object(metadata));
                    continue;
                }
                path.push(key.clone());
                fields.insert(format!("f:{key}"), field_set(value, &mut path, kind));
                path.pop();
            }
            Value::Object(fields)
        }
        _ => Value::Object(Map::new()),
    }
}

fn field_set(value: &Value, path: &mut Vec<String>, kind: &str) -> Value {
    match value {
        Value::Object(map) => {
            let mut fields = Map::new();
            for (key, value) in map {
                path.push(key.clone());
                fields.insert(format!("f:{key}"), field_set(value, path, kind));
                path.pop();
            }
            Value::Object(fields)
        }
        Value::Array(items) => match merge_key(path, kind) {
            Some(key) => {
                let mut fields = Map::new();
                for item in items {
                    if let Some(id) = item.get(key) {
                        let mut element_key = Map::new();
                        element_key.insert(key.to_string(), id.clone());
                        let mut element = match field_set(item, path, kind) {
                            Value::Object(element) => element,
                            _ => Map::new(),
                        };
                        element.insert(".".to_string(), Value::Object(Map::new()));
                        fields.insert(
                            format!("k:{}", Value::Object(element_key)),
                            Value::Object(element),
                        );
                    }
                }
                Value::Object(fields)
            }
            None => Value::Object(Map::new()),
        },
        _ => Value::Object(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strategic(mut target: Value, patch: Value, kind: &str) -> Value {
        strategic_merge_patch(&mut target, &patch, kind).unwrap();
        target
    }

    #[test]
    fn containers_merge_by_name_and_args_are_replaced() {
        let target = json!({"spec": {"containers": [
            {"name": "vault", "image": "v:1", "args": ["a", "b"], "env": [{"name": "X", "value": "1"}]},
            {"name": "side", "image": "s:1"}
        ]}});
        let patch = json!({"spec": {"containers": [
            {"name": "vault", "args": ["sleep infinity"], "env": [{"name": "Y", "value": "2"}]}
        ]}});
        let result = strategic(target, patch, "Pod");
        assert_eq!(
            result,
            json!({"spec": {"containers": [
                {"name": "vault", "image": "v:1", "args": ["sleep infinity"],
                 "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "side", "image": "s:1"}
            ]}})
        );
    }

    #[test]
    fn directives_delete_reorder_and_never_remain() {
        let target = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
                            "metadata": {"finalizers": ["x"], "labels": {"k": "v", "gone": "1"}}});
        let patch = json!({
            "metadata": {"finalizers": ["y"], "labels": {"gone": null}},
            "spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                "containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "i"}]
            }
        });
        let result = strategic(target, patch, "Pod");
        assert_eq!(
            result,
            json!({"spec": {"containers": [{"name": "c", "image": "i"}, {"name": "a"}]},
                   "metadata": {"finalizers": ["x", "y"], "labels": {"k": "v"}}})
        );
    }

    #[test]
    fn service_ports_merge_by_port_and_container_ports_by_container_port() {
        let service = strategic(
            json!({"spec": {"ports": [{"port": 80, "name": "http"}]}}),
            json!({"spec": {"ports": [{"port": 443, "name": "https"}]}}),
            "Service",
        );
        assert_eq!(service["spec"]["ports"].as_array().unwrap().len(), 2);
        let slice = strategic(
            json!({"ports": [{"port": 80, "name": "http"}]}),
            json!({"ports": [{"port": 443, "name": "https"}]}),
            "EndpointSlice",
        );
        assert_eq!(slice["ports"], json!([{"port": 443, "name": "https"}]));
        let pod = strategic(
            json!({"spec": {"containers": [{"name": "v", "ports": [{"containerPort": 8200}]}]}}),
            json!({"spec": {"containers": [{"name": "v", "ports": [{"containerPort": 8201}]}]}}),
            "Pod",
        );
        assert_eq!(
            pod["spec"]["containers"][0]["ports"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn replace_and_retain_keys_directives() {
        let result = strategic(
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            "Deployment",
        );
        assert_eq!(result, json!({"spec": {"strategy": {"type": "Recreate"}}}));
        let result = strategic(
            json!({"data": {"a": "1", "b": "2"}}),
            json!({"data": {"$patch": "replace", "c": "3"}}),
            "ConfigMap",
        );
        assert_eq!(result, json!({"data": {"c": "3"}}));
    }

    #[test]
    fn json_patch_test_failure_leaves_the_target_unchanged() {
        let mut target = json!({"spec": {"replicas": 3}});
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 1},
            {"op": "test", "path": "/spec/replicas", "value": 3}
        ]);
        assert!(json_patch(&mut target, &patch).is_err());
        assert_eq!(target, json!({"spec": {"replicas": 3}}));
    }

    #[test]
    fn fields_v1_names_keyed_list_elements() {
        let fields = fields_v1(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            "Pod",
        );
        assert_eq!(
            fields,
            json!({"f:metadata": {"f:labels": {"f:a": {}}},
                   "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {"f:name": {}, "f:image": {}, ".": {}}}}})
        );
    }
}
