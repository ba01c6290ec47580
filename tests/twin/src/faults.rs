//! Fault injection: API errors and latency on chosen verbs and path prefixes, for a number of
//! requests or until cleared; and pod faults: a container that fails at start, a pod cut off
//! from the network (the ingress gateway and port-forward no longer reach it).

use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;

use crate::status::ApiError;

/// The Kubernetes verb of a request, as RBAC and audit logs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// One rule: which requests it hits, how many times, and what it does to them.
#[derive(Debug, Clone)]
pub struct Fault {
    verb: Option<Verb>,
    path_prefix: String,
    remaining: Option<u32>,
    delay: Duration,
    error: Option<ApiError>,
}

impl Fault {
    /// Answer matching requests with a `Status` of `code` and `reason` instead of serving them.
    pub fn error(code: u16, reason: &str) -> Fault {
        Fault {
            verb: None,
            path_prefix: String::new(),
            remaining: None,
            delay: Duration::ZERO,
            error: Some(ApiError::new(
                code,
                reason,
                format!("injected fault: {reason} ({code})"),
            )),
        }
    }

    /// Hold matching requests for `delay` before serving them.
    pub fn delay(delay: Duration) -> Fault {
        Fault {
            verb: None,
            path_prefix: String::new(),
            remaining: None,
            delay,
            error: None,
        }
    }

    /// Only requests with this verb (default: every verb).
    pub fn on(mut self, verb: Verb) -> Fault {
        self.verb = Some(verb);
        self
    }

    /// Only requests whose URL path starts with `prefix` (default: every path).
    pub fn path(mut self, prefix: &str) -> Fault {
        self.path_prefix = prefix.to_string();
        self
    }

    /// Only the next `count` matching requests (default: until cleared).
    pub fn times(mut self, count: u32) -> Fault {
        self.remaining = Some(count);
        self
    }

    /// Replace the error message.
    pub fn message(mut self, message: &str) -> Fault {
        if let Some(error) = &mut self.error {
            error.message = message.to_string();
        }
        self
    }

    fn matches(&self, verb: Verb, path: &str) -> bool {
        self.verb.is_none_or(|v| v == verb)
            && path.starts_with(&self.path_prefix)
            && self.remaining != Some(0)
    }
}

/// What the matching rules do to one request.
#[derive(Debug, Default, PartialEq)]
pub struct FaultEffect {
    pub delay: Duration,
    pub error: Option<ApiError>,
}

/// A fault of one pod (by name: it applies to every incarnation until cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodFault {
    /// The container's process exits at once with code 1, as a broken image or entrypoint does.
    FailStart,
    /// The ingress gateway and port-forward cannot reach the pod, and what it runs in exec
    /// reaches nothing (raft traffic between pods is cut by `Cluster::cut_network_to`).
    NetworkCut,
    /// What the pod runs in exec reaches only its own cluster's pods, as when the peering
    /// between two clusters' networks is gone (the Vault processes' own traffic is cut by
    /// `Cluster::cut_network_to`).
    OtherClustersCut,
}

/// An access a SelfSubjectAccessReview is denied: a verb on a resource (`group/resource`, or
/// `resource` for the core group, with `/subresource` when there is one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeniedAccess {
    pub verb: String,
    pub resource: String,
}

/// The fault rules of one cluster.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
    pods: Mutex<std::collections::HashSet<(String, String, PodFault)>>,
    denied: Mutex<std::collections::HashSet<DeniedAccess>>,
}

impl Faults {
    /// Makes SelfSubjectAccessReviews of `verb` on `resource` (`pods`, `pods/exec`,
    /// `apps/statefulsets`, ...) answer not allowed. Requests themselves are still served: the
    /// twin does no authorization.
    pub fn deny(&self, verb: &str, resource: &str) {
        self.denied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(DeniedAccess {
                verb: verb.to_string(),
                resource: resource.to_string(),
            });
    }

    /// A SelfSubjectAccessReview answered: allowed, unless [`Faults::deny`] said otherwise.
    pub fn review_access(&self, mut review: Value) -> Value {
        let attributes = &review["spec"]["resourceAttributes"];
        let text = |name: &str| attributes[name].as_str().unwrap_or("").to_string();
        let (group, plural, subresource) = (text("group"), text("resource"), text("subresource"));
        let mut resource = if group.is_empty() {
            plural
        } else {
            format!("{group}/{plural}")
        };
        if !subresource.is_empty() {
            resource = format!("{resource}/{subresource}");
        }
        let denied = self
            .denied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&DeniedAccess {
                verb: text("verb"),
                resource: resource.clone(),
            });
        review["status"] = if denied {
            serde_json::json!({"allowed": false, "denied": true, "reason": format!("the twin denies {} on {resource} (injected fault)", text("verb"))})
        } else {
            serde_json::json!({"allowed": true, "reason": "the twin allows every request"})
        };
        if review["apiVersion"].is_null() {
            review["apiVersion"] = "authorization.k8s.io/v1".into();
            review["kind"] = "SelfSubjectAccessReview".into();
        }
        review
    }

    pub fn inject(&self, fault: Fault) {
        self.lock().push(fault);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Whether no rule is left (counted rules disappear once used up).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The combined effect of every rule matching a request (delays add up, the first error
    /// wins), counting the request against each rule.
    pub fn take(&self, verb: Verb, path: &str) -> FaultEffect {
        let mut rules = self.lock();
        let mut effect = FaultEffect::default();
        for rule in rules.iter_mut().filter(|rule| rule.matches(verb, path)) {
            if let Some(remaining) = &mut rule.remaining {
                *remaining -= 1;
            }
            effect.delay += rule.delay;
            if effect.error.is_none() {
                effect.error = rule.error.clone();
            }
        }
        rules.retain(|rule| rule.remaining != Some(0));
        effect
    }

    /// Gives pod `namespace/pod` the fault `fault` until cleared.
    pub fn add_pod_fault(&self, namespace: &str, pod: &str, fault: PodFault) {
        self.pod_lock()
            .insert((namespace.to_string(), pod.to_string(), fault));
    }

    /// Clears `fault` from pod `namespace/pod`.
    pub fn clear_pod_fault(&self, namespace: &str, pod: &str, fault: PodFault) {
        self.pod_lock()
            .remove(&(namespace.to_string(), pod.to_string(), fault));
    }

    pub fn has_pod_fault(&self, namespace: &str, pod: &str, fault: PodFault) -> bool {
        self.pod_lock()
            .contains(&(namespace.to_string(), pod.to_string(), fault))
    }

    fn pod_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashSet<(String, String, PodFault)>> {
        self.pods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        self.rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_expire_and_filter_by_verb_and_path() {
        let faults = Faults::default();
        faults.inject(
            Fault::error(500, "InternalError")
                .on(Verb::Get)
                .path("/api/v1/namespaces/a")
                .times(2),
        );
        assert!(
            faults
                .take(Verb::List, "/api/v1/namespaces/a/configmaps")
                .error
                .is_none()
        );
        assert!(
            faults
                .take(Verb::Get, "/api/v1/namespaces/b/configmaps/x")
                .error
                .is_none()
        );
        assert_eq!(
            faults
                .take(Verb::Get, "/api/v1/namespaces/a/configmaps/x")
                .error
                .unwrap()
                .code,
            500
        );
        assert!(
            faults
                .take(Verb::Get, "/api/v1/namespaces/a/configmaps/x")
                .error
                .is_some()
        );
        assert!(
            faults
                .take(Verb::Get, "/api/v1/namespaces/a/configmaps/x")
                .error
                .is_none()
        );
    }

    #[test]
    fn delays_add_up() {
        let faults = Faults::default();
        faults.inject(Fault::delay(Duration::from_millis(5)));
        faults.inject(Fault::delay(Duration::from_millis(7)).on(Verb::Create));
        assert_eq!(
            faults.take(Verb::Create, "/").delay,
            Duration::from_millis(12)
        );
        faults.clear();
        assert_eq!(faults.take(Verb::Create, "/"), FaultEffect::default());
    }
}
