//! `pods/log`: `kubectl logs POD` reads what the pod's process wrote, from the log file the
//! twin's kubelet keeps per pod (every incarnation, oldest first, as `kubectl logs` of a
//! restarted pod would need `--previous` for). `container` must name a container of the pod,
//! `tailLines` keeps the last lines; `follow` answers what is there now and ends. A pod the
//! twin does not run (no workloads) has an empty log.

use std::sync::Arc;

use crate::api::Query;
use crate::catalog::ResourceType;
use crate::server::{ClusterState, ResponseBody};
use crate::status::ApiError;
use bytes::Bytes;
use hyper::Response;

pub fn handle(
    state: &Arc<ClusterState>,
    resource: &'static ResourceType,
    namespace: &str,
    name: &str,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let pod = state.store.get(resource, namespace, name)?;
    if let Some(container) = query.get("container") {
        let names: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .map(|containers| {
                containers
                    .iter()
                    .filter_map(|c| c["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if !names.contains(&container) {
            return Err(ApiError::bad_request(format!(
                "container {container} is not valid for pod {name}"
            )));
        }
    }
    let text = match &state.node {
        Some(node) => std::fs::read_to_string(node.log_path(namespace, name)).unwrap_or_default(),
        None => String::new(),
    };
    let tail = match query.get("tailLines") {
        Some(lines) => Some(lines.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("invalid tailLines {lines:?}: not a number"))
        })?),
        None => None,
    };
    let shown = match tail {
        Some(count) => last_lines(&text, count),
        None => text.as_str(),
    };
    Response::builder()
        .status(200)
        .header("Content-Type", "text/plain")
        .header("Cache-Control", "no-cache, private")
        .body(ResponseBody::Whole(Some(Bytes::from(shown.to_string()))))
        .map_err(|error| ApiError::new(500, "InternalError", error.to_string()))
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
