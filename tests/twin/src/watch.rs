//! Watches: a chunked stream of newline-delimited `{"type", "object"}` events, started from a
//! resourceVersion (replayed from the store's history) or from now (synthetic `ADDED` events for
//! what exists), with bookmarks and `timeoutSeconds`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api::Query;
use crate::catalog::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::{ClusterState, ResponseBody};
use crate::status::ApiError;
use crate::store::{EventType, StoredEvent};

/// Which objects a watch reports.
struct Scope {
    resource: &'static ResourceType,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Scope {
    fn includes(&self, object: &Value) -> bool {
        let namespace_matches = self.namespace.as_deref().is_none_or(|namespace| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                == Some(namespace)
        });
        namespace_matches
            && self.labels.matches_object(object)
            && self.fields.matches_object(object)
    }

    /// The event a change means to this watch, if any: a change that moves an object into or out
    /// of the selection is reported as `ADDED` or `DELETED`.
    fn project(&self, event: &StoredEvent) -> Option<&'static str> {
        if event.resource != self.resource {
            return None;
        }
        let now = self.includes(&event.object);
        match event.event_type {
            EventType::Added | EventType::Deleted => now.then_some(event.event_type.as_str()),
            EventType::Modified => {
                let before = event.previous.as_ref().is_some_and(|p| self.includes(p));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }
}

/// Where a watch starts.
enum Start {
    /// From now, with `ADDED` for every existing object (resourceVersion absent or "0").
    Now,
    /// After this resourceVersion, replaying newer events.
    After(u64),
}

/// Answers a watch request with a streaming body fed by a task.
pub fn start(
    state: &Arc<ClusterState>,
    resource: &'static ResourceType,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    query: &Query,
    table: bool,
) -> Result<Response<ResponseBody>, ApiError> {
    let start = match query.get("resourceVersion") {
        None | Some("") | Some("0") => Start::Now,
        Some(text) => Start::After(text.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid resourceVersion {text:?}: not a number"))
        })?),
    };
    let timeout = match query.get("timeoutSeconds") {
        Some(text) => Duration::from_secs(
            text.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {text:?}")))?,
        ),
        None => state.settings.default_watch_timeout,
    };
    let settings = Settings {
        bookmarks: query.flag("allowWatchBookmarks"),
        initial_events: query.flag("sendInitialEvents"),
        bookmark_interval: state.settings.bookmark_interval,
        deadline: Instant::now() + timeout,
        table,
    };
    let scope = Scope {
        resource,
        namespace,
        labels,
        fields,
    };
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(run(state.clone(), scope, start, settings, sender));
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(ResponseBody::Stream(receiver))
        .map_err(|error| ApiError::new(500, "InternalError", error.to_string()))
}

struct Settings {
    bookmarks: bool,
    initial_events: bool,
    bookmark_interval: Duration,
    deadline: Instant,
    /// `kubectl get -w`: each object as a one-row Table ([`crate::table`]) where its kind has one.
    table: bool,
}

impl Settings {
    /// An ADDED/MODIFIED/DELETED event's line.
    fn object_line(&self, resource: &ResourceType, event_type: &str, object: &Value) -> Bytes {
        let resource_version = object["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match self
            .table
            .then(|| crate::table::of(resource, std::slice::from_ref(object), resource_version))
            .flatten()
        {
            Some(table) => line(event_type, &table),
            None => line(event_type, object),
        }
    }
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn bookmark(resource: &ResourceType, resource_version: u64, initial_events_end: bool) -> Bytes {
    let mut object = json!({
        "kind": resource.kind,
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": resource_version.to_string()},
    });
    if initial_events_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line("BOOKMARK", &object)
}

async fn run(
    state: Arc<ClusterState>,
    scope: Scope,
    start: Start,
    settings: Settings,
    sender: mpsc::Sender<Bytes>,
) {
    let store = &state.store;
    let mut changes = store.subscribe();
    changes.borrow_and_update();
    let mut seen = match start {
        Start::Now => {
            let (items, resource_version) =
                store.list(scope.resource, scope.namespace.as_deref(), &|object| {
                    scope.includes(object)
                });
            for item in &items {
                if sender
                    .send(settings.object_line(scope.resource, "ADDED", item))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            resource_version
        }
        Start::After(resource_version) => resource_version,
    };
    if settings.initial_events
        && settings.bookmarks
        && sender
            .send(bookmark(scope.resource, seen, true))
            .await
            .is_err()
    {
        return;
    }
    let mut next_bookmark = Instant::now() + settings.bookmark_interval;
    loop {
        match store.events_since(seen) {
            Err(oldest) => {
                let expired = ApiError::new(
                    410,
                    "Expired",
                    format!(
                        "too old resource version: {seen} ({})",
                        oldest.saturating_sub(1)
                    ),
                );
                let _ = sender.send(line("ERROR", &expired.to_status())).await;
                return;
            }
            Ok(events) => {
                for event in events {
                    seen = event.resource_version;
                    if let Some(event_type) = scope.project(&event)
                        && sender
                            .send(settings.object_line(scope.resource, event_type, &event.object))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(settings.deadline) => {
                if settings.bookmarks {
                    let _ = sender.send(bookmark(scope.resource, seen, false)).await;
                }
                return;
            }
            () = tokio::time::sleep_until(next_bookmark), if settings.bookmarks => {
                next_bookmark = Instant::now() + settings.bookmark_interval;
                if sender.send(bookmark(scope.resource, seen, false)).await.is_err() {
                    return;
                }
            }
            () = sender.closed() => return,
        }
    }
}
