//! Server-side printing: `kubectl get` asks for a `meta.k8s.io/v1` Table (`Accept: ...;as=Table`)
//! and prints its columns. The twin answers with the columns a real API server prints for Pods
//! (READY, STATUS, RESTARTS, AGE; IP and NODE with `-o wide`), Services (TYPE, CLUSTER-IP,
//! EXTERNAL-IP, PORT(S), AGE; SELECTOR with `-o wide`), StatefulSets (READY, AGE; CONTAINERS and
//! IMAGES with `-o wide`), ConfigMaps (DATA, AGE), Ingresses (CLASS, HOSTS, ADDRESS, PORTS, AGE),
//! EndpointSlices (ADDRESSTYPE, PORTS, ENDPOINTS, AGE), Leases (HOLDER, AGE) and Events (LAST SEEN,
//! TYPE, REASON, OBJECT, MESSAGE); other kinds get
//! the plain list, which kubectl prints as NAME and AGE. Each row carries the object's metadata, so
//! `kubectl get -L LABEL` and `--show-labels` work; `kubectl get -w` gets each change as a one-row
//! Table (`watch`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::catalog::ResourceType;

/// A column: its title, its type (`name` for the NAME column) and its priority (1: `-o wide` only).
type Column = (&'static str, &'static str, u8);

/// The cells of one row, from the object and the time now (seconds since the epoch).
type Cells = fn(&Value, u64) -> Vec<Value>;

/// Whether a request's `Accept` header asks for a Table.
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| accept.split(',').any(|kind| kind.contains("as=Table")))
}

/// The Table for `items` of `resource` (`None`: the twin prints this kind as a plain list).
pub fn of(resource: &ResourceType, items: &[Value], resource_version: u64) -> Option<Value> {
    let (columns, cells): (&[Column], Cells) = match resource.kind {
        "Pod" => (
            &[
                ("Name", "name", 0),
                ("Ready", "string", 0),
                ("Status", "string", 0),
                ("Restarts", "string", 0),
                ("Age", "string", 0),
                ("IP", "string", 1),
                ("Node", "string", 1),
            ],
            pod_cells,
        ),
        "Service" => (
            &[
                ("Name", "name", 0),
                ("Type", "string", 0),
                ("Cluster-IP", "string", 0),
                ("External-IP", "string", 0),
                ("Port(s)", "string", 0),
                ("Age", "string", 0),
                ("Selector", "string", 1),
            ],
            service_cells,
        ),
        "StatefulSet" => (
            &[
                ("Name", "name", 0),
                ("Ready", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
            ],
            statefulset_cells,
        ),
        "ConfigMap" => (
            &[
                ("Name", "name", 0),
                ("Data", "integer", 0),
                ("Age", "string", 0),
            ],
            configmap_cells,
        ),
        "Ingress" => (
            &[
                ("Name", "name", 0),
                ("Class", "string", 0),
                ("Hosts", "string", 0),
                ("Address", "string", 0),
                ("Ports", "string", 0),
                ("Age", "string", 0),
            ],
            ingress_cells,
        ),
        "EndpointSlice" => (
            &[
                ("Name", "name", 0),
                ("AddressType", "string", 0),
                ("Ports", "string", 0),
                ("Endpoints", "string", 0),
                ("Age", "string", 0),
            ],
            endpointslice_cells,
        ),
        "Event" => (
            &[
                ("Last Seen", "string", 0),
                ("Type", "string", 0),
                ("Reason", "string", 0),
                ("Object", "string", 0),
                ("Message", "string", 0),
                ("Source", "string", 1),
                ("Count", "integer", 1),
                ("Name", "name", 1),
            ],
            event_cells,
        ),
        "Lease" => (
            &[
                ("Name", "name", 0),
                ("Holder", "string", 0),
                ("Age", "string", 0),
            ],
            lease_cells,
        ),
        _ => return None,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            json!({
                "cells": cells(item, now),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item.get("metadata").cloned().unwrap_or(Value::Null),
                },
            })
        })
        .collect();
    Some(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns
            .iter()
            .map(|(name, kind, priority)| json!({
                "name": name,
                "type": kind,
                "format": if *kind == "name" { "name" } else { "" },
                "description": "",
                "priority": priority,
            }))
            .collect::<Vec<_>>(),
        "rows": rows,
    }))
}

fn name(object: &Value) -> Value {
    object["metadata"]["name"].clone()
}

fn age(object: &Value, now: u64) -> Value {
    let created = object["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(crate::clock::parse_rfc3339);
    match created {
        Some(created) => json!(human_duration(now.saturating_sub(created))),
        None => json!("<unknown>"),
    }
}

fn pod_cells(pod: &Value, now: u64) -> Vec<Value> {
    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let containers = pod["spec"]["containers"]
        .as_array()
        .map_or(statuses.len(), Vec::len);
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let restarts: u64 = statuses
        .iter()
        .filter_map(|s| s["restartCount"].as_u64())
        .sum();
    let waiting = statuses
        .iter()
        .find_map(|s| s["state"]["waiting"]["reason"].as_str());
    let status = if pod["metadata"]["deletionTimestamp"].is_string() {
        "Terminating"
    } else if let Some(reason) = waiting {
        reason
    } else {
        pod["status"]["phase"].as_str().unwrap_or("Unknown")
    };
    vec![
        name(pod),
        json!(format!("{ready}/{containers}")),
        json!(status),
        json!(restarts.to_string()),
        age(pod, now),
        json!(pod["status"]["podIP"].as_str().unwrap_or("<none>")),
        json!(pod["spec"]["nodeName"].as_str().unwrap_or("<none>")),
    ]
}

fn service_cells(service: &Value, now: u64) -> Vec<Value> {
    let spec = &service["spec"];
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|port| {
                    format!(
                        "{}/{}",
                        port["port"].as_u64().unwrap_or(0),
                        port["protocol"].as_str().unwrap_or("TCP")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // Sorted by key, as the API server formats label selectors.
    let selector = spec["selector"]
        .as_object()
        .filter(|selector| !selector.is_empty())
        .map_or("<none>".to_string(), |selector| {
            selector
                .iter()
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        });
    vec![
        name(service),
        json!(spec["type"].as_str().unwrap_or("ClusterIP")),
        json!(spec["clusterIP"].as_str().unwrap_or("<none>")),
        json!("<none>"),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        age(service, now),
        json!(selector),
    ]
}

fn statefulset_cells(statefulset: &Value, now: u64) -> Vec<Value> {
    let ready = statefulset["status"]["readyReplicas"].as_u64().unwrap_or(0);
    let replicas = statefulset["spec"]["replicas"].as_u64().unwrap_or(1);
    let containers: Vec<&Value> = statefulset
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|containers| containers.iter().collect())
        .unwrap_or_default();
    let field = |name: &str| {
        containers
            .iter()
            .map(|c| c[name].as_str().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        name(statefulset),
        json!(format!("{ready}/{replicas}")),
        age(statefulset, now),
        json!(field("name")),
        json!(field("image")),
    ]
}

fn configmap_cells(configmap: &Value, now: u64) -> Vec<Value> {
    let count = |field: &str| configmap[field].as_object().map_or(0, |map| map.len());
    vec![
        name(configmap),
        json!(count("data") + count("binaryData")),
        age(configmap, now),
    ]
}

fn ingress_cells(ingress: &Value, now: u64) -> Vec<Value> {
    let spec = &ingress["spec"];
    let hosts: Vec<&str> = spec["rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| r["host"].as_str().unwrap_or("*"))
                .collect()
        })
        .unwrap_or_default();
    let addresses: Vec<&str> = ingress
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .filter_map(|a| a["ip"].as_str().or(a["hostname"].as_str()))
                .collect()
        })
        .unwrap_or_default();
    let tls = spec["tls"].as_array().is_some_and(|tls| !tls.is_empty());
    vec![
        name(ingress),
        json!(spec["ingressClassName"].as_str().unwrap_or("<none>")),
        json!(if hosts.is_empty() {
            "*".to_string()
        } else {
            hosts.join(",")
        }),
        json!(addresses.join(",")),
        json!(if tls { "80, 443" } else { "80" }),
        age(ingress, now),
    ]
}

fn endpointslice_cells(slice: &Value, now: u64) -> Vec<Value> {
    let ports: Vec<String> = slice["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p["port"].as_u64().map(|port| port.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let addresses: Vec<&str> = slice["endpoints"]
        .as_array()
        .map(|endpoints| {
            endpoints
                .iter()
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect()
        })
        .unwrap_or_default();
    // Three addresses at most, as the API server prints them.
    let endpoints = match addresses.len() {
        0 => "<none>".to_string(),
        1..=3 => addresses.join(","),
        more => format!("{} + {} more...", addresses[..3].join(","), more - 3),
    };
    vec![
        name(slice),
        json!(slice["addressType"].as_str().unwrap_or("")),
        json!(if ports.is_empty() {
            "<unset>".to_string()
        } else {
            ports.join(",")
        }),
        json!(endpoints),
        age(slice, now),
    ]
}

fn event_cells(event: &Value, now: u64) -> Vec<Value> {
    let last_seen = event["lastTimestamp"]
        .as_str()
        .and_then(crate::clock::parse_rfc3339)
        .map_or("<unknown>".to_string(), |seen| {
            human_duration(now.saturating_sub(seen))
        });
    let involved = &event["involvedObject"];
    vec![
        json!(last_seen),
        json!(event["type"].as_str().unwrap_or("")),
        json!(event["reason"].as_str().unwrap_or("")),
        json!(format!(
            "{}/{}",
            involved["kind"].as_str().unwrap_or("").to_lowercase(),
            involved["name"].as_str().unwrap_or("")
        )),
        json!(event["message"].as_str().unwrap_or("")),
        json!(event["source"]["component"].as_str().unwrap_or("")),
        json!(event["count"].as_u64().unwrap_or(1)),
        name(event),
    ]
}

fn lease_cells(lease: &Value, now: u64) -> Vec<Value> {
    vec![
        name(lease),
        json!(lease["spec"]["holderIdentity"].as_str().unwrap_or("")),
        age(lease, now),
    ]
}

/// An age as kubectl prints it (`k8s.io/apimachinery/pkg/util/duration.HumanDuration`).
pub fn human_duration(seconds: u64) -> String {
    let minutes = seconds / 60;
    let hours = seconds / 3600;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            rest => format!("{minutes}m{rest}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            rest => format!("{hours}h{rest}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{}d", hours / 24),
            rest => format!("{}d{rest}h", hours / 24),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            rest => format!("{}y{rest}d", hours / 24 / 365),
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        for (seconds, shown) in [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (3 * 86_400 + 3600, "3d1h"),
            (40 * 86_400, "40d"),
        ] {
            assert_eq!(human_duration(seconds), shown);
        }
    }
}
