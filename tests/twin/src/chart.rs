//! The Vault Helm chart's container as the twin runs it: recognising the chart's start script
//! (or a plain `vault server -config=...`), resolving the container's environment the way a
//! kubelet does, and rendering the server configuration for a `bao` process on loopback
//! (placeholders substituted like the script's `sed`, pod DNS names and pod-local addresses
//! turned into the pod's IP, container paths mapped to host directories, `service_registration`
//! dropped, raft speed settings added).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::Value;

use crate::hcl;

/// What a container runs, as far as the twin is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `vault server`: the chart's start script, or a direct call.
    Vault(VaultStart),
    /// Anything else (`sleep infinity`, ...): the container runs, without Vault.
    Idle,
}

/// How a container starts Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultStart {
    /// The file the script copies before substituting placeholders (container path); `None`
    /// when the server reads its configuration in place.
    pub copy_from: Option<String>,
    /// The configuration `vault server -config=...` reads (container path).
    pub config_path: String,
    /// Placeholders the script substitutes with `sed`, in order; each is replaced by the
    /// variable of the same name when that variable is set and not empty.
    pub placeholders: Vec<String>,
    /// The prefix of the status labels the server's Kubernetes service registration keeps on
    /// its pod: `vault` (`vault-active`, ...) for `vault server`, `openbao` for `bao server`.
    pub labels_prefix: String,
}

/// The placeholders of the chart's script (vault-helm 0.34), used when a chart-like script
/// names none the twin can read.
pub const CHART_PLACEHOLDERS: &[&str] = &[
    "HOST_IP",
    "POD_IP",
    "HOSTNAME",
    "API_ADDR",
    "TRANSIT_ADDR",
    "RAFT_ADDR",
];

/// Reads a container's `command` and `args`.
pub fn recognise(command: &[String], args: &[String]) -> Result<Program, String> {
    let script: String = command
        .iter()
        .chain(args.iter())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = script
        .split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
        .filter(|word| !word.is_empty())
        .collect();
    let server_at = words.windows(2).position(|pair| {
        (pair[0] == "vault"
            || pair[0].ends_with("/vault")
            || pair[0] == "bao"
            || pair[0].ends_with("docker-entrypoint.sh"))
            && pair[1] == "server"
    });
    let Some(server_at) = server_at else {
        return Ok(Program::Idle);
    };
    let binary = words[server_at];
    let labels_prefix = if binary == "bao" || binary.ends_with("/bao") {
        "openbao"
    } else {
        "vault"
    };
    let mut config_path = None;
    let mut index = server_at + 2;
    while index < words.len() {
        let word = words[index];
        if let Some(path) = word
            .strip_prefix("-config=")
            .or_else(|| word.strip_prefix("--config="))
        {
            config_path = Some(unquote_shell(path));
            break;
        }
        if (word == "-config" || word == "--config") && index + 1 < words.len() {
            config_path = Some(unquote_shell(words[index + 1]));
            break;
        }
        index += 1;
    }
    let config_path = config_path.ok_or_else(|| {
        "the container runs `vault server` without -config=<file>: the twin runs Vault only from a configuration file".to_string()
    })?;
    let copy_from = words
        .windows(3)
        .take(server_at)
        .find(|triple| triple[0] == "cp" && !triple[1].starts_with('-'))
        .filter(|triple| unquote_shell(triple[2]) == config_path)
        .map(|triple| unquote_shell(triple[1]));
    let mut placeholders = sed_placeholders(&script);
    if placeholders.is_empty() && copy_from.is_some() && script.contains("sed") {
        placeholders = CHART_PLACEHOLDERS.iter().map(|p| p.to_string()).collect();
    }
    Ok(Program::Vault(VaultStart {
        copy_from,
        config_path,
        placeholders,
        labels_prefix: labels_prefix.to_string(),
    }))
}

fn unquote_shell(word: &str) -> String {
    word.trim_matches(|c| c == '"' || c == '\'').to_string()
}

/// The names in `s|NAME|...|g` and `s/NAME/.../g` expressions, in order, each once.
fn sed_placeholders(script: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let bytes = script.as_bytes();
    for (at, _) in script.match_indices('s') {
        let before = if at == 0 { b' ' } else { bytes[at - 1] };
        let Some(&delimiter) = bytes.get(at + 1) else {
            continue;
        };
        if !matches!(before, b'"' | b'\'' | b' ') || !matches!(delimiter, b'|' | b'/') {
            continue;
        }
        let rest = &script[at + 2..];
        let Some(end) = rest.find(delimiter as char) else {
            continue;
        };
        let name = &rest[..end];
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if is_name && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// What the twin knows about a pod when it resolves its environment.
#[derive(Debug, Clone)]
pub struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub ip: Ipv4Addr,
    pub host_ip: String,
    pub node_name: String,
}

/// Looks up `key` of ConfigMap (`secret == false`) or Secret `name` in the pod's namespace,
/// decoded.
pub type KeyLookup<'a> = dyn Fn(bool, &str, &str) -> Option<String> + 'a;

/// The container's environment as a kubelet builds it: `envFrom` then `env` (later names win),
/// `$(NAME)` references to earlier variables expanded, `valueFrom` field, ConfigMap and Secret
/// references resolved. `HOSTNAME` defaults to the pod name, as container runtimes set it.
pub fn container_env(
    container: &Value,
    pod: &Value,
    facts: &PodFacts,
    lookup: &KeyLookup<'_>,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = vec![("HOSTNAME".to_string(), facts.name.clone())];
    let set = |env: &mut Vec<(String, String)>, name: &str, value: String| {
        env.retain(|(n, _)| n != name);
        env.push((name.to_string(), value));
    };
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = source["prefix"].as_str().unwrap_or("");
        for (field, secret) in [("configMapRef", false), ("secretRef", true)] {
            let Some(name) = source[field]["name"].as_str() else {
                continue;
            };
            let optional = source[field]["optional"].as_bool().unwrap_or(false);
            match lookup(secret, name, "") {
                Some(all) => {
                    for line in all.lines() {
                        if let Some((key, value)) = line.split_once('=') {
                            set(&mut env, &format!("{prefix}{key}"), value.to_string());
                        }
                    }
                }
                None if optional => {}
                None => return Err(format!("{field} {name:?} does not exist")),
            }
        }
    }
    for variable in container["env"].as_array().into_iter().flatten() {
        let Some(name) = variable["name"].as_str() else {
            continue;
        };
        let value = if let Some(value) = variable.get("value").and_then(Value::as_str) {
            expand_references(value, &env)
        } else if let Some(source) = variable.get("valueFrom") {
            value_from(source, pod, facts, lookup)
                .map_err(|why| format!("env {name}: {why}"))?
                .unwrap_or_default()
        } else {
            String::new()
        };
        set(&mut env, name, value);
    }
    Ok(env)
}

/// `$(NAME)` replaced by the value of an earlier variable; `$$(` stays a literal `$(`; unknown
/// references stay as they are (as kubelets do).
pub fn expand_references(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if rest.starts_with("$$") {
            out.push('$');
            rest = &rest[2..];
            continue;
        }
        if let Some(inner) = rest.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some((_, found)) = env.iter().rev().find(|(n, _)| n == &inner[..end])
        {
            out.push_str(found);
            rest = &inner[end + 1..];
            continue;
        }
        out.push('$');
        rest = &rest[1..];
    }
    out.push_str(rest);
    out
}

fn value_from(
    source: &Value,
    pod: &Value,
    facts: &PodFacts,
    lookup: &KeyLookup<'_>,
) -> Result<Option<String>, String> {
    if let Some(path) = source
        .pointer("/fieldRef/fieldPath")
        .and_then(Value::as_str)
    {
        let value = match path {
            "metadata.name" => facts.name.clone(),
            "metadata.namespace" => facts.namespace.clone(),
            "metadata.uid" => facts.uid.clone(),
            "status.podIP" => facts.ip.to_string(),
            "status.podIPs" => facts.ip.to_string(),
            "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
            "spec.nodeName" => facts.node_name.clone(),
            "spec.serviceAccountName" => pod
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string(),
            other => {
                let map_key = |prefix: &str| {
                    other
                        .strip_prefix(prefix)
                        .and_then(|rest| rest.strip_suffix("']"))
                        .map(str::to_string)
                };
                if let Some(key) = map_key("metadata.labels['") {
                    pod["metadata"]["labels"][&key]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                } else if let Some(key) = map_key("metadata.annotations['") {
                    pod["metadata"]["annotations"][&key]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                } else {
                    return Err(format!("fieldRef {other:?} is not supported by the twin"));
                }
            }
        };
        return Ok(Some(value));
    }
    for (field, secret) in [("configMapKeyRef", false), ("secretKeyRef", true)] {
        if let Some(reference) = source.get(field) {
            let name = reference["name"].as_str().unwrap_or("");
            let key = reference["key"].as_str().unwrap_or("");
            let optional = reference["optional"].as_bool().unwrap_or(false);
            return match lookup(secret, name, key) {
                Some(value) => Ok(Some(value)),
                None if optional => Ok(None),
                None => Err(format!("{field} {name}/{key} does not exist")),
            };
        }
    }
    if source.get("resourceFieldRef").is_some() {
        return Ok(Some("0".to_string()));
    }
    Err("valueFrom names no source the twin knows".to_string())
}

/// Host names the pod's DNS would resolve, with the address the twin gives each.
#[derive(Debug, Clone, Default)]
pub struct HostMap {
    /// (name, address), longest names first.
    entries: Vec<(String, String)>,
}

impl HostMap {
    /// Names `<pod>.<service>`, `.<ns>`, `.<ns>.svc`, `.<ns>.svc.cluster.local` for every pod.
    pub fn for_pods(pods: &[(String, Ipv4Addr)], service: &str, namespace: &str) -> HostMap {
        let mut entries = Vec::new();
        for (pod, ip) in pods {
            for suffix in [
                format!("{service}.{namespace}.svc.cluster.local"),
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}"),
                service.to_string(),
            ] {
                if !service.is_empty() {
                    entries.push((format!("{pod}.{suffix}"), ip.to_string()));
                }
            }
        }
        entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        HostMap { entries }
    }

    /// Adds names the pod reaches itself by (`localhost`, `127.0.0.1`, `[::]`, `0.0.0.0`): in a
    /// pod these are the pod's own network namespace, in the twin its own address.
    pub fn with_pod_local(mut self, ip: Ipv4Addr) -> HostMap {
        for name in ["localhost", "127.0.0.1", "[::]", "0.0.0.0"] {
            self.entries.push((name.to_string(), ip.to_string()));
        }
        self.entries
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        self
    }

    /// `text` with every whole occurrence of a known name replaced by its address.
    pub fn rewrite(&self, text: &str) -> String {
        let is_name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut index = 0;
        'outer: while index < text.len() {
            let boundary_before = index == 0 || {
                let before = bytes[index - 1];
                !is_name_byte(before) && before != b'.'
            };
            if boundary_before {
                for (name, address) in &self.entries {
                    if text[index..].starts_with(name.as_str()) {
                        let after = index + name.len();
                        let boundary_after = bytes.get(after).is_none_or(|&b| {
                            let continues_name = is_name_byte(b)
                                || (b == b'.'
                                    && bytes.get(after + 1).is_some_and(|&c| is_name_byte(c)));
                            !continues_name
                        });
                        if boundary_after {
                            out.push_str(address);
                            index = after;
                            continue 'outer;
                        }
                    }
                }
            }
            let next = text[index..].chars().next().map_or(1, |c| c.len_utf8());
            out.push_str(&text[index..index + next]);
            index += next;
        }
        out
    }
}

/// Container path prefixes and the host directories they stand for.
#[derive(Debug, Clone, Default)]
pub struct PathMap {
    /// (container path, host path), longest container paths first.
    entries: Vec<(String, PathBuf)>,
}

impl PathMap {
    pub fn new(mut entries: Vec<(String, PathBuf)>) -> PathMap {
        for entry in &mut entries {
            while entry.0.len() > 1 && entry.0.ends_with('/') {
                entry.0.pop();
            }
        }
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.0.len()));
        PathMap { entries }
    }

    /// The host path of container path `path`, if a mount covers it.
    pub fn host_path(&self, path: &str) -> Option<PathBuf> {
        self.entries.iter().find_map(|(prefix, host)| {
            if path == prefix {
                Some(host.clone())
            } else {
                path.strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(|rest| host.join(rest))
            }
        })
    }

    /// `text` with quoted container paths (`"/vault/data..."`) replaced by host paths.
    pub fn rewrite_quoted(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("\"/") {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
            let end = rest.find('"').unwrap_or(rest.len());
            let path = &rest[..end];
            match self.host_path(path) {
                Some(host) => out.push_str(&host.to_string_lossy()),
                None => out.push_str(path),
            }
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }

    /// An environment value that is a container path, mapped; other values unchanged.
    pub fn rewrite_value(&self, value: &str) -> String {
        if value.starts_with('/')
            && let Some(host) = self.host_path(value)
        {
            return host.to_string_lossy().into_owned();
        }
        value.to_string()
    }
}

/// The raft settings that make a three-node cluster form in seconds (test-environment.md).
pub const RAFT_SPEED_SETTINGS: &[(&str, &str)] = &[
    ("performance_multiplier", "1"),
    ("autopilot_reconcile_interval", "\"1s\""),
    ("autopilot_update_interval", "\"1s\""),
];

/// A configuration rendered for `bao`, and what the twin changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub notes: Vec<String>,
    /// The API listener's port and whether it serves TLS.
    pub api_port: u16,
    pub api_tls: bool,
}

/// Renders `config` (the ConfigMap's text) for a pod: `sed` placeholders, host names, paths,
/// no `service_registration`, raft speed settings.
pub fn render(
    config: &str,
    start: &VaultStart,
    env: &[(String, String)],
    hosts: &HostMap,
    paths: &PathMap,
) -> Rendered {
    let mut notes = Vec::new();
    let mut text = config.to_string();
    for placeholder in &start.placeholders {
        if let Some((_, value)) = env.iter().rev().find(|(n, _)| n == placeholder)
            && !value.is_empty()
            && text.contains(placeholder.as_str())
        {
            text = text.replace(placeholder.as_str(), value);
            notes.push(format!(
                "substituted {placeholder} (as the start script's sed)"
            ));
        }
    }
    let rewritten = hosts.rewrite(&text);
    if rewritten != text {
        notes.push("pod DNS names and pod-local addresses replaced by pod IPs".to_string());
        text = rewritten;
    }
    let mapped = paths.rewrite_quoted(&text);
    if mapped != text {
        notes.push("container paths mapped to host directories".to_string());
        text = mapped;
    }
    let (without, removed) = hcl::remove_blocks(&text, "service_registration");
    if removed > 0 {
        notes.push(
            "service_registration dropped (the twin sets the vault-* pod labels itself)"
                .to_string(),
        );
        text = without;
    }
    let (faster, added) =
        hcl::add_missing_attributes(&text, "storage", "raft", RAFT_SPEED_SETTINGS);
    if !added.is_empty() {
        notes.push(format!("raft speed settings added: {}", added.join(", ")));
        text = faster;
    }
    let document = hcl::Document::parse(&text);
    let listener = document
        .blocks_named("listener", Some("tcp"))
        .into_iter()
        .next();
    let api_port = listener
        .and_then(|block| document.attribute(block, "address"))
        .and_then(|address| address.rsplit_once(':').map(|(_, port)| port.to_string()))
        .and_then(|port| port.parse().ok())
        .unwrap_or(8200);
    let api_tls = listener.is_some_and(|block| {
        !matches!(
            document.attribute(block, "tls_disable").as_deref(),
            Some("1" | "true" | "True" | "TRUE")
        )
    });
    Rendered {
        text,
        notes,
        api_port,
        api_tls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The start script of vault-helm 0.34's server StatefulSet.
    pub const CHART_ARGS: &str = "cp /vault/config/extraconfig-from-values.hcl /tmp/storageconfig.hcl;\n[ -n \"${HOST_IP}\" ] && sed -Ei \"s|HOST_IP|${HOST_IP?}|g\" /tmp/storageconfig.hcl;\n[ -n \"${POD_IP}\" ] && sed -Ei \"s|POD_IP|${POD_IP?}|g\" /tmp/storageconfig.hcl;\n[ -n \"${HOSTNAME}\" ] && sed -Ei \"s|HOSTNAME|${HOSTNAME?}|g\" /tmp/storageconfig.hcl;\n[ -n \"${API_ADDR}\" ] && sed -Ei \"s|API_ADDR|${API_ADDR?}|g\" /tmp/storageconfig.hcl;\n[ -n \"${TRANSIT_ADDR}\" ] && sed -Ei \"s|TRANSIT_ADDR|${TRANSIT_ADDR?}|g\" /tmp/storageconfig.hcl;\n[ -n \"${RAFT_ADDR}\" ] && sed -Ei \"s|RAFT_ADDR|${RAFT_ADDR?}|g\" /tmp/storageconfig.hcl;\n/usr/local/bin/docker-entrypoint.sh vault server -config=/tmp/storageconfig.hcl \n";

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_chart_script_is_recognised_and_other_commands_are_idle() {
        let program = recognise(&strings(&["/bin/sh", "-ec"]), &strings(&[CHART_ARGS])).unwrap();
        assert_eq!(
            program,
            Program::Vault(VaultStart {
                copy_from: Some("/vault/config/extraconfig-from-values.hcl".to_string()),
                config_path: "/tmp/storageconfig.hcl".to_string(),
                placeholders: strings(CHART_PLACEHOLDERS),
                labels_prefix: "vault".to_string(),
            })
        );
        assert_eq!(
            recognise(&strings(&["/bin/sh", "-ec"]), &strings(&["sleep infinity"])).unwrap(),
            Program::Idle
        );
        assert_eq!(recognise(&[], &[]).unwrap(), Program::Idle);
        let direct = recognise(&strings(&["vault", "server", "-config", "/c.hcl"]), &[]).unwrap();
        assert!(
            matches!(direct, Program::Vault(VaultStart { ref config_path, copy_from: None, .. }) if config_path == "/c.hcl")
        );
        assert!(recognise(&strings(&["vault", "server", "-dev"]), &[]).is_err());
        let entrypoint = recognise(
            &strings(&[
                "docker-entrypoint.sh",
                "server",
                "-config=/vault/config/x.hcl",
            ]),
            &[],
        )
        .unwrap();
        assert!(matches!(entrypoint, Program::Vault(_)));
    }

    #[test]
    fn environment_is_resolved_like_a_kubelet() {
        let container = json!({"env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "VAULT_API_ADDR", "value": "http://$(POD_IP):8200"},
            {"name": "LITERAL", "value": "$$(POD_IP) $(UNKNOWN)"},
            {"name": "HOSTNAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "MISSING_OK", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k", "optional": true}}},
        ]});
        let facts = PodFacts {
            name: "vault-1".to_string(),
            namespace: "vault".to_string(),
            uid: "u".to_string(),
            ip: Ipv4Addr::new(127, 20, 0, 2),
            host_ip: "127.0.0.1".to_string(),
            node_name: "twin".to_string(),
        };
        let lookup = |secret: bool, name: &str, key: &str| {
            (secret && name == "s" && key == "k").then(|| "shh".to_string())
        };
        let env = container_env(&container, &json!({}), &facts, &lookup).unwrap();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("VAULT_API_ADDR"), Some("http://127.20.0.2:8200"));
        assert_eq!(get("LITERAL"), Some("$(POD_IP) $(UNKNOWN)"));
        assert_eq!(get("HOSTNAME"), Some("vault-1"));
        assert_eq!(get("FROM_SECRET"), Some("shh"));
        assert_eq!(get("MISSING_OK"), Some(""));
        let broken = json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]});
        assert!(
            container_env(&broken, &json!({}), &facts, &lookup)
                .unwrap_err()
                .contains("nope")
        );
    }

    #[test]
    fn the_chart_config_renders_for_loopback() {
        let config = r#"ui = true
listener "tcp" {
  tls_disable = 1
  address = "[::]:8200"
  cluster_address = "[::]:8201"
}
storage "raft" {
  path = "/vault/data"
  node_id = "HOSTNAME"
  retry_join {
    leader_api_addr = "http://vault-0.vault-internal:8200"
  }
  retry_join {
    leader_api_addr = "http://vault-1.vault-internal.vault.svc.cluster.local:8200"
  }
}
seal "transit" {
  address = "http://kms.example:8200"
  key_name = "vault-10"
}
service_registration "kubernetes" {}
"#;
        let Program::Vault(start) =
            recognise(&strings(&["/bin/sh", "-ec"]), &strings(&[CHART_ARGS])).unwrap()
        else {
            panic!("not vault")
        };
        let ip0 = Ipv4Addr::new(127, 20, 0, 1);
        let ip1 = Ipv4Addr::new(127, 20, 0, 2);
        let hosts = HostMap::for_pods(
            &[
                ("vault-0".to_string(), ip0),
                ("vault-1".to_string(), ip1),
                ("vault-10".to_string(), ip0),
            ],
            "vault-internal",
            "vault",
        )
        .with_pod_local(ip1);
        let paths = PathMap::new(vec![(
            "/vault/data/".to_string(),
            PathBuf::from("/pv/data-vault-1"),
        )]);
        let env = vec![("HOSTNAME".to_string(), "vault-1".to_string())];
        let rendered = render(config, &start, &env, &hosts, &paths);
        let text = &rendered.text;
        assert!(text.contains("address = \"127.20.0.2:8200\""), "{text}");
        assert!(
            text.contains("cluster_address = \"127.20.0.2:8201\""),
            "{text}"
        );
        assert!(text.contains("path = \"/pv/data-vault-1\""), "{text}");
        assert!(text.contains("node_id = \"vault-1\""), "{text}");
        assert!(text.contains("\"http://127.20.0.1:8200\""), "{text}");
        assert!(text.contains("\"http://127.20.0.2:8200\""), "{text}");
        assert!(
            text.contains("key_name = \"vault-10\""),
            "a name not followed by the service stays: {text}"
        );
        assert!(!text.contains("service_registration"), "{text}");
        assert!(text.contains("performance_multiplier = 1"), "{text}");
        assert_eq!((rendered.api_port, rendered.api_tls), (8200, false));
        assert!(rendered.notes.len() >= 4, "{:?}", rendered.notes);
    }

    #[test]
    fn host_names_are_replaced_only_whole() {
        let hosts = HostMap::for_pods(
            &[("vault-0".to_string(), Ipv4Addr::new(10, 0, 0, 1))],
            "vault-internal",
            "vault",
        );
        assert_eq!(
            hosts.rewrite("x.vault-0.vault-internal"),
            "x.vault-0.vault-internal"
        );
        assert_eq!(
            hosts.rewrite("vault-0.vault-internal.other"),
            "vault-0.vault-internal.other"
        );
        assert_eq!(hosts.rewrite("vault-0.vault-internal."), "10.0.0.1.");
        assert_eq!(hosts.rewrite("é vault-0.vault-internal:1"), "é 10.0.0.1:1");
        assert_eq!(
            hosts.rewrite("vault-0.vault-internal-x"),
            "vault-0.vault-internal-x"
        );
    }
}
