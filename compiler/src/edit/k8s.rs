//! Typed edits of Kubernetes objects held as JSON: container args of a StatefulSet, an Ingress
//! rewritten to another backend, a proxy Service with its EndpointSlice, a ConfigMap key, and
//! the cleaning of server fields that makes a backup restorable.

use std::fmt;

use serde_json::{Map, Value, json};

/// Why an edit cannot be made to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError(pub String);

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `kind`, `metadata.namespace` and `metadata.name` of an object.
pub fn identity(object: &Value) -> (String, String, String) {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    (
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

/// A Service with its selector taken off: it then selects no pod, so clients inside the cluster
/// reach no endpoint (the endpoint controller withdraws the Service's EndpointSlices).
pub fn without_selector(service: &Value) -> Result<Value, EditError> {
    let mut edited = service.clone();
    let spec = edited
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| EditError("the Service has no spec".into()))?;
    spec.remove("selector");
    Ok(edited)
}

/// Set the args of one container of a StatefulSet's pod template (by container name).
pub fn set_container_args(
    statefulset: &Value,
    container: &str,
    args: &[String],
) -> Result<Value, EditError> {
    let mut edited = statefulset.clone();
    let containers = edited
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| {
            EditError("the StatefulSet has no containers in spec.template.spec".into())
        })?;
    let names: Vec<String> = containers
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let target = containers
        .iter_mut()
        .find(|c| c["name"] == container)
        .ok_or_else(|| {
            EditError(format!(
                "the StatefulSet has no container `{container}`; its containers are {}",
                names.join(", ")
            ))
        })?;
    target["args"] = json!(args);
    Ok(edited)
}

/// The args of one container, for showing what a patch replaces.
pub fn container_args(statefulset: &Value, container: &str) -> Option<Vec<String>> {
    statefulset["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == container)?["args"]
        .as_array()
        .map(|args| {
            args.iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
}

/// What an Ingress rewrite sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRewrite {
    /// Only backends on this service are rewritten; `None` rewrites every backend.
    pub from_service: Option<String>,
    pub service: String,
    pub port: u16,
    pub annotations: Vec<(String, String)>,
}

impl IngressRewrite {
    /// What a `k8s.ingress-rewrite` step asks for: its backend, and the ingress-nginx
    /// annotations for the protocol, the upstream host and any others it lists.
    pub fn from_input(input: &planc_schema::actions::IngressRewriteInput) -> IngressRewrite {
        let mut annotations = vec![(
            "nginx.ingress.kubernetes.io/backend-protocol".to_string(),
            input.backend_protocol.clone(),
        )];
        if let Some(vhost) = &input.upstream_vhost {
            annotations.push((
                "nginx.ingress.kubernetes.io/upstream-vhost".into(),
                vhost.clone(),
            ));
        }
        annotations.extend(input.annotations.clone());
        IngressRewrite {
            from_service: input.from_service.clone(),
            service: input.service.clone(),
            port: input.port,
            annotations,
        }
    }
}

/// Point the Ingress's backends at another service and port and set the annotations.
pub fn rewrite_ingress(ingress: &Value, rewrite: &IngressRewrite) -> Result<Value, EditError> {
    let mut edited = ingress.clone();
    let mut rewritten = 0;
    let mut seen = Vec::new();
    let new_backend = json!({ "name": rewrite.service, "port": { "number": rewrite.port } });
    let mut visit = |backend: &mut Value| {
        let name = backend["name"].as_str().unwrap_or_default().to_string();
        seen.push(name.clone());
        if rewrite
            .from_service
            .as_ref()
            .is_none_or(|from| *from == name)
        {
            *backend = new_backend.clone();
            rewritten += 1;
        }
    };
    if let Some(rules) = edited
        .pointer_mut("/spec/rules")
        .and_then(Value::as_array_mut)
    {
        for rule in rules {
            let Some(paths) = rule
                .pointer_mut("/http/paths")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for path in paths {
                if let Some(backend) = path.pointer_mut("/backend/service") {
                    visit(backend);
                }
            }
        }
    }
    if let Some(backend) = edited.pointer_mut("/spec/defaultBackend/service") {
        visit(backend);
    }
    if rewritten == 0 {
        return Err(EditError(match (&rewrite.from_service, seen.is_empty()) {
            (Some(from), false) => format!(
                "the Ingress has no backend on service `{from}`; its backends are {}",
                seen.join(", ")
            ),
            _ => "the Ingress has no service backend to rewrite".to_string(),
        }));
    }
    if !rewrite.annotations.is_empty() {
        let metadata = edited
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| EditError("the Ingress has no metadata".into()))?;
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if annotations.is_null() {
            *annotations = Value::Object(Map::new());
        }
        let annotations = annotations
            .as_object_mut()
            .ok_or_else(|| EditError("the Ingress's annotations are not a mapping".into()))?;
        for (key, value) in &rewrite.annotations {
            annotations.insert(key.clone(), json!(value));
        }
    }
    Ok(edited)
}

/// What a proxy to another cluster's ingress consists of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub namespace: String,
    pub name: String,
    pub port: u16,
    pub port_name: String,
    /// The IPv4 address the target host resolved to.
    pub address: String,
}

/// A Service without selector and the EndpointSlice that gives it its one address.
pub fn proxy_objects(proxy: &Proxy) -> (Value, Value) {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": proxy.name, "namespace": proxy.namespace },
        "spec": {
            "ports": [{
                "name": proxy.port_name,
                "port": proxy.port,
                "protocol": "TCP",
                "targetPort": proxy.port,
            }],
        },
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": proxy.name,
            "namespace": proxy.namespace,
            "labels": { "kubernetes.io/service-name": proxy.name },
        },
        "addressType": "IPv4",
        "ports": [{ "name": proxy.port_name, "port": proxy.port, "protocol": "TCP" }],
        "endpoints": [{ "addresses": [proxy.address] }],
    });
    (service, slice)
}

/// The text of one ConfigMap key.
pub fn configmap_value<'a>(configmap: &'a Value, key: &str) -> Result<&'a str, EditError> {
    configmap["data"][key].as_str().ok_or_else(|| {
        let keys: Vec<&str> = configmap["data"]
            .as_object()
            .map(|d| d.keys().map(String::as_str).collect())
            .unwrap_or_default();
        EditError(if keys.is_empty() {
            format!("the ConfigMap has no key `{key}` (it has no data)")
        } else {
            format!(
                "the ConfigMap has no key `{key}`; its keys are {}",
                keys.join(", ")
            )
        })
    })
}

/// Replace the text of one existing ConfigMap key.
pub fn set_configmap_value(configmap: &Value, key: &str, text: &str) -> Result<Value, EditError> {
    configmap_value(configmap, key)?;
    let mut edited = configmap.clone();
    if let Some(data) = edited.get_mut("data").and_then(Value::as_object_mut) {
        data.insert(key.to_string(), json!(text));
    }
    Ok(edited)
}

/// The object without the fields the server owns, so that it can be created again.
pub fn clean_for_backup(object: &Value) -> Value {
    let mut cleaned = object.clone();
    if let Some(metadata) = cleaned["metadata"].as_object_mut() {
        for field in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            metadata.remove(field);
        }
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    if let Some(object) = cleaned.as_object_mut() {
        object.remove("status");
    }
    if cleaned["kind"] == "Service"
        && let Some(spec) = cleaned["spec"].as_object_mut()
    {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_by_container_name() {
        let sts = json!({"kind": "StatefulSet", "spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "args": ["x"]},
            {"name": "vault", "args": ["long script"]}
        ]}}}});
        let edited = set_container_args(&sts, "vault", &["sleep infinity".into()]).unwrap();
        assert_eq!(
            container_args(&edited, "vault"),
            Some(vec!["sleep infinity".to_string()])
        );
        assert_eq!(
            container_args(&edited, "sidecar"),
            Some(vec!["x".to_string()])
        );
        let error = set_container_args(&sts, "bao", &[]).unwrap_err();
        assert_eq!(
            error.0,
            "the StatefulSet has no container `bao`; its containers are sidecar, vault"
        );
    }

    #[test]
    fn ingress_without_the_expected_backend() {
        let ingress = json!({"kind": "Ingress", "metadata": {"name": "vault"}, "spec": {"rules": [
            {"http": {"paths": [{"backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}
        ]}});
        let rewrite = IngressRewrite {
            from_service: Some("vault-active".into()),
            service: "proxy".into(),
            port: 443,
            annotations: vec![],
        };
        assert_eq!(
            rewrite_ingress(&ingress, &rewrite).unwrap_err().0,
            "the Ingress has no backend on service `vault-active`; its backends are web"
        );
    }

    #[test]
    fn backups_lose_server_fields_only() {
        let service = json!({"kind": "Service", "metadata": {"name": "v", "uid": "u", "resourceVersion": "7",
            "labels": {"app.kubernetes.io/managed-by": "Helm"}}, "spec": {"clusterIP": "10.0.0.1", "ports": []},
            "status": {}});
        let cleaned = clean_for_backup(&service);
        assert_eq!(
            cleaned,
            json!({"kind": "Service", "metadata": {"name": "v",
            "labels": {"app.kubernetes.io/managed-by": "Helm"}}, "spec": {"ports": []}})
        );
    }
}
