//! The real `kubectl` against the twin: get, apply (client- and server-side), delete, patch,
//! scale and `get -w`, each test with its own kubeconfig and discovery cache.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::Kubectl;
use twin::Twin;

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: vault
  labels: {app: vault}
spec:
  replicas: 3
  serviceName: vault-internal
  selector:
    matchLabels: {app: vault}
  template:
    metadata:
      labels: {app: vault}
    spec:
      containers:
      - name: vault
        image: hashicorp/vault:1.14
        args: ["server"]
        env:
        - {name: A, value: "1"}
      - name: sidecar
        image: busybox
"#;

fn configmap_yaml(name: &str, namespace: &str, app: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {{app: {app}}}\ndata:\n  key: {value:?}\n"
    )
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn get_lists_namespaced_all_namespaces_and_by_label() {
    let twin = Twin::start(&["old", "new"]).unwrap();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    let files = tempfile::tempdir().unwrap();
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: vault\n",
    );
    for (name, namespace, app) in [
        ("a", "default", "vault"),
        ("b", "vault", "vault"),
        ("c", "default", "other"),
    ] {
        let file = write(
            files.path(),
            &format!("{name}.yaml"),
            &configmap_yaml(name, namespace, app, "v"),
        );
        kubectl.run(&["create", "-f", &file]);
    }
    assert_eq!(
        kubectl.run(&["get", "configmaps", "-o", "name"]),
        "configmap/a\nconfigmap/c\n"
    );
    assert_eq!(
        kubectl.run(&["get", "cm", "-n", "vault", "-o", "name"]),
        "configmap/b\n"
    );
    let all = kubectl.run(&["get", "cm", "-A"]);
    assert!(
        all.lines()
            .any(|line| line.split_whitespace().take(2).eq(["vault", "b"])),
        "{all}"
    );
    let all_json = kubectl.get_json(&["get", "cm", "-A"]);
    let names: Vec<&str> = all_json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "c", "b"], "sorted by namespace, then name");
    assert_eq!(
        kubectl.run(&["get", "cm", "-A", "-l", "app=vault", "-o", "name"]),
        "configmap/a\nconfigmap/b\n"
    );
    assert_eq!(
        kubectl.run(&["get", "cm", "-l", "app!=vault", "-o", "name"]),
        "configmap/c\n"
    );
    assert_eq!(
        kubectl.run(&["--context", "new", "get", "cm", "-o", "name"]),
        "",
        "the other cluster is empty"
    );
    let missing = kubectl.fail(&["get", "cm", "nope"]);
    assert!(
        missing.contains("configmaps \"nope\" not found"),
        "{missing}"
    );
}

#[test]
fn apply_creates_then_updates_client_side_then_server_side() {
    let twin = Twin::start(&["old"]).unwrap();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    let files = tempfile::tempdir().unwrap();
    let file = write(files.path(), "sts.yaml", STATEFULSET);
    assert_eq!(
        kubectl.run(&["apply", "-f", &file]).trim(),
        "statefulset.apps/vault created"
    );
    let changed = STATEFULSET
        .replace("value: \"1\"", "value: \"2\"")
        .replace("replicas: 3", "replicas: 2");
    let file = write(files.path(), "sts.yaml", &changed);
    assert_eq!(
        kubectl.run(&["apply", "-f", &file]).trim(),
        "statefulset.apps/vault configured"
    );
    let live = kubectl.get_json(&["get", "sts", "vault"]);
    assert_eq!(live["spec"]["replicas"], 2);
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "2"
    );
    assert_eq!(live["metadata"]["generation"], 2);
    assert!(
        live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    assert_eq!(
        kubectl.run(&["apply", "-f", &file]).trim(),
        "statefulset.apps/vault unchanged"
    );

    let server_side = changed.replace("args: [\"server\"]", "args: [\"sleep\", \"infinity\"]");
    let file = write(files.path(), "sts.yaml", &server_side);
    assert_eq!(
        kubectl.run(&["apply", "--server-side", "-f", &file]).trim(),
        "statefulset.apps/vault serverside-applied"
    );
    let live = kubectl.get_json(&["get", "sts", "vault", "--show-managed-fields"]);
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["args"],
        serde_json::json!(["sleep", "infinity"])
    );
    let managers: Vec<&str> = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"kubectl"), "{managers:?}");

    let new_file = write(
        files.path(),
        "cm.yaml",
        &configmap_yaml("fresh", "default", "x", "1"),
    );
    assert_eq!(
        kubectl
            .run(&["apply", "--server-side", "-f", &new_file])
            .trim(),
        "configmap/fresh serverside-applied"
    );
    assert_eq!(
        kubectl.get_json(&["get", "cm", "fresh"])["data"]["key"],
        "1"
    );
}

#[test]
fn delete_from_file_removes_the_objects() {
    let twin = Twin::start(&["old"]).unwrap();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    let files = tempfile::tempdir().unwrap();
    let file = write(
        files.path(),
        "both.yaml",
        &format!(
            "{}---\n{}",
            configmap_yaml("one", "default", "x", "1"),
            configmap_yaml("two", "default", "x", "2")
        ),
    );
    kubectl.run(&["apply", "-f", &file]);
    let deleted = kubectl.run(&["delete", "-f", &file]);
    assert_eq!(
        deleted,
        "configmap \"one\" deleted\nconfigmap \"two\" deleted\n"
    );
    assert_eq!(kubectl.run(&["get", "cm", "-o", "name"]), "");
    let again = kubectl.fail(&["delete", "-f", &file]);
    assert!(again.contains("not found"), "{again}");
}

#[test]
fn patch_merge_json_and_strategic() {
    let twin = Twin::start(&["old"]).unwrap();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    let files = tempfile::tempdir().unwrap();
    kubectl.run(&["apply", "-f", &write(files.path(), "sts.yaml", STATEFULSET)]);
    kubectl.run(&[
        "apply",
        "-f",
        &write(
            files.path(),
            "cm.yaml",
            &configmap_yaml("cfg", "default", "x", "1"),
        ),
    ]);

    kubectl.run(&[
        "patch",
        "cm",
        "cfg",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"extra":"yes"}}"#,
    ]);
    assert_eq!(
        kubectl.get_json(&["get", "cm", "cfg"])["data"]["extra"],
        "yes"
    );

    kubectl.run(&[
        "patch", "cm", "cfg", "--type", "json", "-p",
        r#"[{"op":"test","path":"/data/extra","value":"yes"},{"op":"replace","path":"/data/key","value":"2"}]"#,
    ]);
    assert_eq!(kubectl.get_json(&["get", "cm", "cfg"])["data"]["key"], "2");
    let failed = kubectl.fail(&[
        "patch",
        "cm",
        "cfg",
        "--type",
        "json",
        "-p",
        r#"[{"op":"test","path":"/data/key","value":"9"}]"#,
    ]);
    assert!(failed.contains("invalid"), "{failed}");

    kubectl.run(&[
        "patch", "sts", "vault", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"vault","args":["sleep","infinity"]}]}}}}"#,
    ]);
    let containers =
        kubectl.get_json(&["get", "sts", "vault"])["spec"]["template"]["spec"]["containers"]
            .clone();
    assert_eq!(
        containers.as_array().unwrap().len(),
        2,
        "strategic merge keeps the sidecar"
    );
    assert_eq!(
        containers[0]["args"],
        serde_json::json!(["sleep", "infinity"])
    );
    assert_eq!(containers[0]["image"], "hashicorp/vault:1.14");
}

#[test]
fn scale_statefulset() {
    let twin = Twin::start(&["old"]).unwrap();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    let files = tempfile::tempdir().unwrap();
    kubectl.run(&["apply", "-f", &write(files.path(), "sts.yaml", STATEFULSET)]);
    assert_eq!(
        kubectl
            .run(&["scale", "sts", "vault", "--replicas=5"])
            .trim(),
        "statefulset.apps/vault scaled"
    );
    assert_eq!(
        kubectl.get_json(&["get", "sts", "vault"])["spec"]["replicas"],
        5
    );
    let refused = kubectl.fail(&[
        "scale",
        "sts",
        "vault",
        "--replicas=1",
        "--current-replicas=3",
    ]);
    assert!(
        refused.contains("Expected replicas to be 3, was 5"),
        "{refused}"
    );
}

#[test]
fn get_watch_prints_objects_created_after_it_started() {
    let twin = Twin::start(&["old"]).unwrap();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    let files = tempfile::tempdir().unwrap();
    kubectl.run(&[
        "apply",
        "-f",
        &write(
            files.path(),
            "first.yaml",
            &configmap_yaml("first", "default", "x", "1"),
        ),
    ]);
    let mut watch = kubectl
        .command(&["get", "configmaps", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w starts");
    let stdout = watch.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || received.recv_timeout(Duration::from_secs(20));
    assert_eq!(
        next_line().as_deref(),
        Ok("configmap/first"),
        "the initial list"
    );
    // Created after the list was printed: only the watch (from the list's resourceVersion) can
    // report it, whether or not the watch request has reached the server yet.
    kubectl.run(&[
        "apply",
        "-f",
        &write(
            files.path(),
            "second.yaml",
            &configmap_yaml("second", "default", "x", "2"),
        ),
    ]);
    assert_eq!(
        next_line().as_deref(),
        Ok("configmap/second"),
        "the watch event"
    );
    watch.kill().unwrap();
    watch.wait().unwrap();
    reader.join().unwrap();
}

#[test]
fn version_and_discovery_satisfy_kubectl() {
    let twin = Twin::start(&["old"]).unwrap();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    let version = kubectl.run(&["version", "-o", "json"]);
    assert!(
        version.contains("\"gitVersion\": \"v1.33.0-twin\""),
        "{version}"
    );
    let resources = kubectl.run(&["api-resources", "-o", "name"]);
    for name in [
        "configmaps",
        "statefulsets.apps",
        "ingresses.networking.k8s.io",
        "leases.coordination.k8s.io",
        "endpointslices.discovery.k8s.io",
        "poddisruptionbudgets.policy",
    ] {
        assert!(
            resources.lines().any(|line| line == name),
            "{name} missing from:\n{resources}"
        );
    }
    assert!(
        kubectl
            .run(&["get", "ns", "-o", "name"])
            .contains("namespace/default")
    );
}

#[test]
fn typed_create_commands_send_protobuf_the_twin_decodes() {
    let twin = Twin::start(&["old"]).unwrap();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    assert_eq!(
        kubectl.run(&["create", "namespace", "vault"]).trim(),
        "namespace/vault created"
    );
    kubectl.run(&[
        "-n",
        "vault",
        "create",
        "configmap",
        "cfg",
        "--from-literal=k=v",
    ]);
    kubectl.run(&[
        "-n",
        "vault",
        "create",
        "secret",
        "generic",
        "tok",
        "--from-literal=token=s3cr3t",
    ]);
    assert_eq!(
        kubectl.get_json(&["-n", "vault", "get", "cm", "cfg"])["data"]["k"],
        "v"
    );
    let secret = kubectl.get_json(&["-n", "vault", "get", "secret", "tok"]);
    assert_eq!(secret["data"]["token"], "czNjcjN0");
    assert_eq!(secret["type"], "Opaque");
}
