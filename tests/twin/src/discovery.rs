//! Discovery documents (`/version`, `/api`, `/apis`, API resource lists) and the small OpenAPI v3
//! documents `kubectl apply` reads to learn that the server validates fields itself.

use serde_json::{Value, json};

use crate::catalog::{self, CATALOG, ResourceType, Subresource, group_version_path};

/// The Kubernetes version the twin claims to be (one minor above kubectl 1.32 is within skew).
pub const SERVER_MAJOR: &str = "1";
pub const SERVER_MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": SERVER_MAJOR,
        "minor": SERVER_MINOR,
        "emulationMajor": SERVER_MAJOR,
        "emulationMinor": SERVER_MINOR,
        "gitVersion": format!("v{SERVER_MAJOR}.{SERVER_MINOR}.0-twin"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`: the core group's versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_document(group: &str) -> Value {
    let versions: Vec<Value> = catalog::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `/apis`: every named group.
pub fn group_list() -> Value {
    let mut groups: Vec<&str> = Vec::new();
    for (group, _) in catalog::group_versions() {
        if !group.is_empty() && !groups.contains(&group) {
            groups.push(group);
        }
    }
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups.into_iter().map(group_document).collect::<Vec<_>>(),
    })
}

/// `/apis/<group>`, if the twin serves the group.
pub fn group(group: &str) -> Option<Value> {
    catalog::group_versions()
        .iter()
        .any(|(g, _)| *g == group && !g.is_empty())
        .then(|| {
            let mut document = group_document(group);
            document["kind"] = json!("APIGroup");
            document["apiVersion"] = json!("v1");
            document
        })
}

fn main_verbs(resource: &ResourceType) -> Vec<&'static str> {
    let mut verbs = vec![
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    if !resource.namespaced {
        verbs.retain(|verb| *verb != "deletecollection");
    }
    verbs
}

/// `/api/v1` or `/apis/<group>/<version>`: the APIResourceList, if served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&ResourceType> = CATALOG
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let mut entries = Vec::new();
    for resource in resources {
        let mut entry = json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": main_verbs(resource),
            "storageVersionHash": storage_version_hash(resource),
        });
        if !resource.short_names.is_empty() {
            entry["shortNames"] = json!(resource.short_names);
        }
        if !resource.categories.is_empty() {
            entry["categories"] = json!(resource.categories);
        }
        entries.push(entry);
        for subresource in resource.subresources {
            let name = format!("{}/{}", resource.plural, subresource.name());
            entries.push(match subresource {
                Subresource::Status => json!({
                    "name": name, "singularName": "", "namespaced": resource.namespaced,
                    "kind": resource.kind, "verbs": ["get", "patch", "update"],
                }),
                Subresource::Scale => json!({
                    "name": name, "singularName": "", "namespaced": resource.namespaced,
                    "group": "autoscaling", "version": "v1", "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }),
                Subresource::PortForward => json!({
                    "name": name, "singularName": "", "namespaced": resource.namespaced,
                    "kind": "PodPortForwardOptions", "verbs": ["create", "get"],
                }),
                Subresource::Log => json!({
                    "name": name, "singularName": "", "namespaced": resource.namespaced,
                    "kind": "Pod", "verbs": ["get"],
                }),
                Subresource::Exec => json!({
                    "name": name, "singularName": "", "namespaced": resource.namespaced,
                    "kind": "PodExecOptions", "verbs": ["create", "get"],
                }),
            });
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }))
}

fn storage_version_hash(resource: &ResourceType) -> String {
    format!(
        "{:016x}",
        fnv1a(resource.api_version().as_bytes(), resource.kind.as_bytes())
    )[..11]
        .to_string()
}

fn fnv1a(first: &[u8], second: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in first.iter().chain(second) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The OpenAPI v3 path of a group version (`api/v1`, `apis/apps/v1`).
fn openapi_v3_key(group: &str, version: &str) -> String {
    group_version_path(group, version)
        .trim_start_matches('/')
        .to_string()
}

/// `/openapi/v3`: one entry per group version.
pub fn openapi_v3_index() -> Value {
    let mut paths = serde_json::Map::new();
    for (group, version) in catalog::group_versions() {
        let key = openapi_v3_key(group, version);
        let document = openapi_v3_document(group, version).unwrap_or(Value::Null);
        let hash = format!("{:016X}", fnv1a(document.to_string().as_bytes(), b""));
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<group version path>`: paths with the group-version-kind of each operation and a
/// `fieldValidation` parameter, which is all `kubectl apply` looks for; no schemas, so kubectl
/// computes strategic merge patches from its compiled-in types.
pub fn openapi_v3_document(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&ResourceType> = CATALOG
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let field_validation = json!({
        "name": "fieldValidation", "in": "query", "uniqueItems": true,
        "description": "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields.",
        "schema": {"type": "string", "uniqueItems": true},
    });
    let mut paths = serde_json::Map::new();
    for resource in resources {
        let gvk =
            json!({"group": resource.group, "version": resource.version, "kind": resource.kind});
        let operation = |action: &str, with_validation: bool| {
            let mut operation = json!({
                "operationId": format!("{action}{}", resource.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "responses": {"200": {"description": "OK"}},
            });
            if with_validation {
                operation["parameters"] = json!([field_validation.clone()]);
            }
            operation
        };
        let base = group_version_path(group, version);
        let collection = if resource.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", resource.plural)
        } else {
            format!("{base}/{}", resource.plural)
        };
        paths.insert(
            collection.clone(),
            json!({"get": operation("list", false), "post": operation("post", true),
                   "delete": operation("deletecollection", false)}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": operation("get", false), "put": operation("put", true),
                   "patch": operation("patch", true), "delete": operation("delete", false)}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{SERVER_MAJOR}.{SERVER_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
