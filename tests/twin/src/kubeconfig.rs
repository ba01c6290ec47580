//! The kubeconfig file: one cluster, user and context per twin cluster, written 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// One kubeconfig entry: the context name and the server URL.
pub struct Entry<'a> {
    pub name: &'a str,
    pub server: &'a str,
}

/// The kubeconfig text; the first entry is the current context. Every context uses namespace
/// `default` and a user with a dummy bearer token (the twin does not check credentials).
pub fn render(entries: &[Entry<'_>]) -> String {
    let quote = |text: &str| serde_json::Value::String(text.to_string()).to_string();
    let mut text = String::from("apiVersion: v1\nkind: Config\npreferences: {}\n");
    if let Some(first) = entries.first() {
        text.push_str(&format!("current-context: {}\n", quote(first.name)));
    }
    text.push_str("clusters:\n");
    for entry in entries {
        text.push_str(&format!(
            "- name: {}\n  cluster:\n    server: {}\n",
            quote(entry.name),
            quote(entry.server)
        ));
    }
    text.push_str("contexts:\n");
    for entry in entries {
        text.push_str(&format!(
            "- name: {}\n  context:\n    cluster: {}\n    user: {}\n    namespace: default\n",
            quote(entry.name),
            quote(entry.name),
            quote(&format!("twin-{}", entry.name))
        ));
    }
    text.push_str("users:\n");
    for entry in entries {
        text.push_str(&format!(
            "- name: {}\n  user:\n    token: {}\n",
            quote(&format!("twin-{}", entry.name)),
            quote(&format!("twin-{}-token", entry.name))
        ));
    }
    text
}

/// Writes `text` to `path` with mode 0600 (also when the file already exists).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}
