//! Events, as the kubelet and the StatefulSet controller of a real cluster record them: a pod
//! assigned and its container started, stopped and backing off after a failure; a StatefulSet
//! creating and deleting its pods. `kubectl get events` prints them (`table`); they are never
//! deleted (a real cluster keeps them for an hour).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::store::{Store, WriteOptions};

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

/// Records an Event about `object` (a Pod, a StatefulSet) from `component`.
pub fn record(
    store: &Store,
    object: &Value,
    kind: Kind,
    reason: &str,
    message: &str,
    component: &str,
) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let Some(events) = crate::catalog::find("", "v1", "events") else {
        return;
    };
    let metadata = &object["metadata"];
    let namespace = metadata["namespace"].as_str().unwrap_or("default");
    let name = metadata["name"].as_str().unwrap_or("");
    let now = crate::clock::now_rfc3339();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{name}.{:016x}", NEXT.fetch_add(1, Ordering::Relaxed)),
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": object["apiVersion"],
            "kind": object["kind"],
            "namespace": namespace,
            "name": name,
            "uid": metadata["uid"],
        },
        "reason": reason,
        "message": message,
        "type": match kind {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        },
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let _ = store.create(events, namespace, event, &WriteOptions::default());
}
