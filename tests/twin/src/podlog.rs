//! `pods/log`: `kubectl logs POD` reads what the pod's process wrote, from the log file the
//! twin's kubelet keeps per pod, where each container start begins with a
//! `=== twin: starting container C of pod NS/P (uid U)` line. As on a real cluster the answer is
//! the current container's log (of this pod, not an earlier pod of the same name); `previous`
//! gives the container before it (an error when it has not restarted); `container` must name a
//! container of the pod; `tailLines` keeps the last lines; `follow` streams what the container
//! writes next, until it stops or the pod goes. A pod the twin does not run (no workloads) has an
//! empty log.

use std::sync::Arc;
use std::time::Duration;

use crate::api::Query;
use crate::catalog::ResourceType;
use crate::server::{ClusterState, ResponseBody};
use crate::status::ApiError;
use bytes::Bytes;
use hyper::Response;

const START: &str = "=== twin: starting container ";

pub fn handle(
    state: &Arc<ClusterState>,
    resource: &'static ResourceType,
    namespace: &str,
    name: &str,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let pod = state.store.get(resource, namespace, name)?;
    let containers: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .map(|containers| {
            containers
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let container = match query.get("container") {
        Some(container) if !containers.contains(&container) => {
            return Err(ApiError::bad_request(format!(
                "container {container} is not valid for pod {name}"
            )));
        }
        Some(container) => container.to_string(),
        None => containers.first().copied().unwrap_or("").to_string(),
    };
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let path = state
        .node
        .as_ref()
        .map(|node| node.log_path(namespace, name));
    let text = path
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    let starts = container_starts(&text, &uid);
    let previous = query.flag("previous");
    let (from, to) = if previous {
        match starts.len() {
            0 | 1 => {
                return Err(ApiError::bad_request(format!(
                    "previous terminated container \"{container}\" in pod \"{name}\" not found"
                )));
            }
            count => (starts[count - 2], starts[count - 1]),
        }
    } else {
        (starts.last().copied().unwrap_or(text.len()), text.len())
    };
    let segment = &text[from..to];
    let tail = match query.get("tailLines") {
        Some(lines) => Some(lines.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("invalid tailLines {lines:?}: not a number"))
        })?),
        None => None,
    };
    let shown = match tail {
        Some(count) => last_lines(segment, count),
        None => segment,
    };
    let builder = Response::builder()
        .status(200)
        .header("Content-Type", "text/plain")
        .header("Cache-Control", "no-cache, private");
    let body = match path.filter(|_| query.flag("follow") && !previous) {
        Some(path) => {
            let (sender, receiver) = tokio::sync::mpsc::channel(16);
            let first = Bytes::from(shown.to_string());
            let state = state.clone();
            let (namespace, name, offset) = (namespace.to_string(), name.to_string(), to);
            tokio::spawn(async move {
                if sender.send(first).await.is_err() {
                    return;
                }
                follow(
                    &state, resource, &namespace, &name, &uid, &path, offset, sender,
                )
                .await;
            });
            ResponseBody::Stream(receiver)
        }
        None => ResponseBody::Whole(Some(Bytes::from(shown.to_string()))),
    };
    builder
        .body(body)
        .map_err(|error| ApiError::new(500, "InternalError", error.to_string()))
}

/// Byte offsets in `text` where a container of pod `uid` started.
fn container_starts(text: &str, uid: &str) -> Vec<usize> {
    let marker = format!("(uid {uid})");
    let mut starts = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with(START) && line.contains(&marker) {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts
}

/// Sends what is appended to `path` after `offset`, every 200 ms, until the pod `uid` is gone,
/// its container starts again, or the client hangs up.
#[allow(clippy::too_many_arguments)]
async fn follow(
    state: &ClusterState,
    resource: &'static ResourceType,
    namespace: &str,
    name: &str,
    uid: &str,
    path: &std::path::Path,
    mut offset: usize,
    sender: tokio::sync::mpsc::Sender<Bytes>,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let same_pod = state
            .store
            .get(resource, namespace, name)
            .is_ok_and(|pod| pod["metadata"]["uid"] == uid);
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.len() > offset {
            let new = &text[offset..];
            // A new container start ends this container's log.
            let (this, restarted) = match new.find(START) {
                Some(at) => (&new[..at], true),
                None => (new, false),
            };
            if !this.is_empty() && sender.send(Bytes::from(this.to_string())).await.is_err() {
                return;
            }
            offset += this.len();
            if restarted {
                return;
            }
        }
        if !same_pod || sender.is_closed() {
            return;
        }
    }
}

/// The last `count` lines of `text` (all of it when it has fewer).
fn last_lines(text: &str, count: usize) -> &str {
    if count == 0 {
        return "";
    }
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let mut seen = 0;
    for (index, byte) in trimmed.bytes().enumerate().rev() {
        if byte == b'\n' {
            seen += 1;
            if seen == count {
                return &text[index + 1..];
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn keeps_the_last_lines() {
        let text = "one\ntwo\nthree\n";
        assert_eq!(last_lines(text, 1), "three\n");
        assert_eq!(last_lines(text, 2), "two\nthree\n");
        assert_eq!(last_lines(text, 5), text);
        assert_eq!(last_lines(text, 0), "");
        assert_eq!(last_lines("no newline", 1), "no newline");
    }
}
