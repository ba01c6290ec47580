//! `twin up`, `twin down` and `twin status`: a twin of clusters `old` and `new` (the
//! `vault-pair` scenario, or `empty` clusters) serving in a background process whose pid,
//! kubeconfig, env file, secrets and log live in one 0700 directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kubeconfig::write_private;
use crate::scenario::{Scenario, ScenarioOptions};
use crate::twin::{Twin, TwinOptions, create_private_dir};

/// The clusters `twin up` starts.
pub const CLUSTERS: &[&str] = &["old", "new"];

/// What `twin up` brings up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioName {
    /// OLD and NEW with the Vault chart, OLD initialised with data, NEW empty.
    VaultPair,
    /// OLD and NEW with the Vault chart, OLD initialised with data, NEW left uninitialised: the
    /// live plan's nodes join OLD's raft cluster.
    VaultPairLive,
    /// As `vault-pair`, sealed by Azure Key Vault through the twin's Azure emulator (OpenBao
    /// 2.6.2), NEW's pods signing in with workload identity; for the AKS plan.
    VaultPairAzure,
    /// As `vault-pair-azure`, NEW left uninitialised and without retry_join; for the AKS live
    /// plan.
    VaultPairAzureLive,
    /// As `vault-pair`, both clusters installed with OpenBao's chart (`openbao-helm`): release
    /// and namespace `openbao`, `openbao-active` labels, `BAO_*` variables.
    OpenbaoPair,
    /// OLD and NEW API servers only: no workloads, no Vault.
    Empty,
}

impl ScenarioName {
    pub fn parse(name: &str) -> Result<ScenarioName, String> {
        match name {
            "vault-pair" => Ok(ScenarioName::VaultPair),
            "vault-pair-live" => Ok(ScenarioName::VaultPairLive),
            "vault-pair-azure" => Ok(ScenarioName::VaultPairAzure),
            "vault-pair-azure-live" => Ok(ScenarioName::VaultPairAzureLive),
            "openbao-pair" => Ok(ScenarioName::OpenbaoPair),
            "empty" => Ok(ScenarioName::Empty),
            other => Err(format!(
                "unknown scenario {other:?}: use vault-pair (the default), vault-pair-live, vault-pair-azure, vault-pair-azure-live, openbao-pair or empty"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioName::VaultPair => "vault-pair",
            ScenarioName::VaultPairLive => "vault-pair-live",
            ScenarioName::VaultPairAzure => "vault-pair-azure",
            ScenarioName::VaultPairAzureLive => "vault-pair-azure-live",
            ScenarioName::OpenbaoPair => "openbao-pair",
            ScenarioName::Empty => "empty",
        }
    }
}

/// How `twin up` was asked to start.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub scenario: ScenarioName,
    /// `http` or `https`: the scheme of the Vault URLs in the env and params files.
    pub url_scheme: String,
}

impl Default for UpOptions {
    fn default() -> UpOptions {
        UpOptions {
            scenario: ScenarioName::VaultPair,
            url_scheme: "http".to_string(),
        }
    }
}

/// The files of a twin directory.
#[derive(Debug, Clone)]
pub struct TwinDir {
    pub dir: PathBuf,
}

impl TwinDir {
    /// Creates `dir` (0700) and makes its path absolute.
    pub fn create(dir: &Path) -> Result<TwinDir, String> {
        create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
        Ok(TwinDir { dir })
    }

    /// An existing directory, as given.
    pub fn existing(dir: &Path) -> TwinDir {
        TwinDir {
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    pub fn env(&self) -> PathBuf {
        self.dir.join("env")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("twin.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("twin.log")
    }
    /// Written once the servers listen: the clusters and their URLs.
    pub fn clusters(&self) -> PathBuf {
        self.dir.join("clusters.json")
    }
    /// Pid files of the processes the twin started (pods, key services).
    pub fn pids(&self) -> PathBuf {
        self.dir.join("pids")
    }

    fn running_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_twin_process(pid).then_some(pid)
    }
}

/// Whether `pid` is a live (not zombie) process running the twin binary.
fn is_twin_process(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains("twin"))
        .unwrap_or(false)
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Serves clusters `old` and `new` in this process until SIGTERM or SIGINT.
pub fn serve(dir: &Path, options: &UpOptions) -> Result<(), String> {
    let started = Instant::now();
    // Handlers go in before anything says the twin is ready: a SIGTERM sent as soon as
    // clusters.json appears must stop it cleanly, not kill it.
    let termination = Termination::listen()?;
    let paths = TwinDir::create(dir)?;
    if let Some(pid) = paths.running_pid()
        && pid != std::process::id() as i32
    {
        return Err(format!(
            "a twin is already running from {} (pid {pid}): run `twin down --dir {}` first",
            paths.dir.display(),
            paths.dir.display()
        ));
    }
    let _ = std::fs::remove_file(paths.clusters());
    let _ = std::fs::remove_file(paths.dir.join("scenario.json"));
    write_private(&paths.pid(), &format!("{}\n", std::process::id()))
        .map_err(|e| format!("cannot write {}: {e}", paths.pid().display()))?;
    let leftovers = crate::process::stop_recorded(&paths.pids(), Duration::from_secs(10));
    if !leftovers.is_empty() {
        println!("stopped processes left by an earlier twin: {leftovers:?}");
    }
    let running = match options.scenario {
        ScenarioName::Empty => {
            let twin = Twin::start_with(TwinOptions::new(CLUSTERS).dir(&paths.dir))
                .map_err(|e| e.to_string())?;
            write_empty_env(&paths, &twin)?;
            Running::Twin(twin)
        }
        ScenarioName::VaultPair
        | ScenarioName::VaultPairLive
        | ScenarioName::VaultPairAzure
        | ScenarioName::VaultPairAzureLive
        | ScenarioName::OpenbaoPair => {
            let base = match options.scenario {
                ScenarioName::VaultPairLive => ScenarioOptions::vault_pair_live(),
                ScenarioName::OpenbaoPair => ScenarioOptions::openbao_pair(),
                ScenarioName::VaultPairAzure => ScenarioOptions::vault_pair_azure(
                    crate::scenario::IdentityForm::WorkloadIdentity,
                ),
                ScenarioName::VaultPairAzureLive => ScenarioOptions::vault_pair_azure_live(
                    crate::scenario::IdentityForm::WorkloadIdentity,
                ),
                _ => ScenarioOptions::vault_pair(),
            };
            let mut scenario_options = base.dir(&paths.dir);
            // The AKS plans' Vault URLs are https.
            if !matches!(
                options.scenario,
                ScenarioName::VaultPairAzure | ScenarioName::VaultPairAzureLive
            ) {
                scenario_options.url_scheme = options.url_scheme.clone();
            }
            Running::Scenario(Box::new(Scenario::start(scenario_options)?))
        }
    };
    let twin = match &running {
        Running::Twin(twin) => twin,
        Running::Scenario(scenario) => scenario.twin(),
    };
    let clusters: Vec<Value> = twin
        .clusters()
        .iter()
        .map(|cluster| json!({"name": cluster.name(), "url": cluster.url()}))
        .collect();
    write_private(
        &paths.clusters(),
        &json!({
            "pid": std::process::id(),
            "scenario": options.scenario.as_str(),
            "startup_seconds": started.elapsed().as_secs_f64(),
            "clusters": clusters,
        })
        .to_string(),
    )
    .map_err(|e| format!("cannot write {}: {e}", paths.clusters().display()))?;
    println!("{}", summary(&paths));
    let _ = std::io::stdout().flush();
    termination.wait();
    drop(running);
    let _ = std::fs::remove_file(paths.clusters());
    let _ = std::fs::remove_file(paths.pid());
    Ok(())
}

/// What `serve` keeps running.
enum Running {
    Twin(Twin),
    Scenario(Box<Scenario>),
}

fn write_empty_env(paths: &TwinDir, twin: &Twin) -> Result<(), String> {
    let mut env = format!(
        "# Written by `twin up`; use it with: . {}\nexport KUBECONFIG={}\nexport TWIN_DIR={}\n",
        shell_quote(&paths.env().display().to_string()),
        shell_quote(&twin.kubeconfig_path().display().to_string()),
        shell_quote(&paths.dir.display().to_string()),
    );
    for cluster in twin.clusters() {
        env.push_str(&format!(
            "export {}_API_URL={}\n",
            cluster.name().to_uppercase().replace('-', "_"),
            shell_quote(&cluster.url())
        ));
    }
    write_private(&paths.env(), &env)
        .map_err(|e| format!("cannot write {}: {e}", paths.env().display()))
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment it is made.
struct Termination {
    runtime: tokio::runtime::Runtime,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Termination {
    fn listen() -> Result<Self, String> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime to wait for signals: {e}"))?;
        let catch = |kind: SignalKind| {
            runtime
                .block_on(async { signal(kind) })
                .map_err(|e| format!("cannot catch signal {kind:?}: {e}"))
        };
        let terminate = catch(SignalKind::terminate())?;
        let interrupt = catch(SignalKind::interrupt())?;
        let hangup = catch(SignalKind::hangup())?;
        Ok(Self {
            runtime,
            terminate,
            interrupt,
            hangup,
        })
    }

    /// Blocks until one of the signals arrives.
    fn wait(mut self) {
        self.runtime.block_on(async {
            tokio::select! {
                _ = self.terminate.recv() => {}
                _ = self.interrupt.recv() => {}
                _ = self.hangup.recv() => {}
            }
        });
    }
}

/// Starts `serve` as a background process (`<exe> serve --dir DIR ...`) and waits until it is
/// ready (for `vault-pair`: until both Vaults answer through their ingress).
pub fn up(
    dir: &Path,
    exe: &Path,
    options: &UpOptions,
    ready_timeout: Duration,
) -> Result<String, String> {
    let started = Instant::now();
    let paths = TwinDir::create(dir)?;
    if let Some(pid) = paths.running_pid() {
        return Err(format!(
            "a twin is already running from {} (pid {pid}): run `twin down --dir {}` first",
            paths.dir.display(),
            paths.dir.display()
        ));
    }
    let _ = std::fs::remove_file(paths.clusters());
    let log = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(paths.log())
            .map_err(|e| format!("cannot create {}: {e}", paths.log().display()))?
    };
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(exe)
        .arg("serve")
        .arg("--dir")
        .arg(&paths.dir)
        .arg("--scenario")
        .arg(options.scenario.as_str())
        .arg("--url-scheme")
        .arg(&options.url_scheme)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    write_private(&paths.pid(), &format!("{}\n", child.id()))
        .map_err(|e| format!("cannot write {}: {e}", paths.pid().display()))?;
    let deadline = Instant::now() + ready_timeout;
    loop {
        if paths.clusters().exists() {
            return Ok(format!(
                "{}\n  ready in {:.1} s",
                summary(&paths),
                started.elapsed().as_secs_f64()
            ));
        }
        if let Ok(Some(exit)) = child.try_wait() {
            let _ = std::fs::remove_file(paths.pid());
            return Err(format!(
                "the twin server exited at start ({exit}); its log {} says:\n{}",
                paths.log().display(),
                std::fs::read_to_string(paths.log()).unwrap_or_default()
            ));
        }
        if Instant::now() > deadline {
            // SAFETY: signalling our own child, which we have not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let stop_deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < stop_deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            crate::process::stop_recorded(&paths.pids(), Duration::from_secs(5));
            let _ = std::fs::remove_file(paths.pid());
            return Err(format!(
                "the twin server did not get ready within {ready_timeout:?}; see {}",
                paths.log().display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn summary(paths: &TwinDir) -> String {
    let clusters = read_clusters(paths);
    let scenario = read_scenario(paths);
    let mut text = format!("twin is up: {}\n", paths.dir.display());
    for (name, url) in &clusters {
        text.push_str(&format!("  cluster {name}: {url}\n"));
        if let Some(vault) = scenario.iter().find(|v| v["name"] == name.as_str()) {
            text.push_str(&format!(
                "    vault: {} (ingress gateway http {} https {}), key service {}\n",
                vault["url"].as_str().unwrap_or("?"),
                vault["gateway"]["http"].as_str().unwrap_or("?"),
                vault["gateway"]["https"].as_str().unwrap_or("?"),
                vault["kms"].as_str().unwrap_or("?"),
            ));
        }
    }
    text.push_str(&format!(
        "  kubeconfig: {}\n  use it with: . {}\n",
        paths.kubeconfig().display(),
        paths.env().display(),
    ));
    if scenario.is_empty() {
        text.push_str("  example: kubectl --context old get namespaces\n");
    } else {
        let first = scenario.first();
        let namespace = first
            .and_then(|vault| vault["namespace"].as_str())
            .unwrap_or("vault");
        let labels = if first.is_some_and(|vault| vault["chart"] == "openbao-helm") {
            "openbao"
        } else {
            "vault"
        };
        text.push_str(&format!(
            "  example: kubectl --context old -n {namespace} get pods -L {labels}-active,{labels}-sealed\n  example: curl $CURL_CONNECT_TO -H \"X-Vault-Token: $(cat $OLD_ROOT_TOKEN_FILE)\" $OLD_VAULT_URL/v1/sys/leader\n",
        ));
    }
    text.push_str(&format!(
        "  stop with: twin down --dir {}",
        paths.dir.display()
    ));
    text
}

/// The clusters of `scenario.json` (empty without a scenario).
fn read_scenario(paths: &TwinDir) -> Vec<Value> {
    std::fs::read_to_string(paths.dir.join("scenario.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|document| document["clusters"].as_array().cloned())
        .unwrap_or_default()
}

fn read_clusters(paths: &TwinDir) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(paths.clusters()) else {
        return Vec::new();
    };
    let Ok(document) = serde_json::from_str::<Value>(&text) else {
        return Vec::new();
    };
    document["clusters"]
        .as_array()
        .map(|clusters| {
            clusters
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["url"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Stops the twin started from `dir`: SIGTERM, then SIGKILL after `grace`.
pub fn down(dir: &Path, grace: Duration) -> Result<String, String> {
    let paths = TwinDir::existing(dir);
    let Some(pid) = paths.running_pid() else {
        let stale = paths.pid().exists();
        let _ = std::fs::remove_file(paths.pid());
        let _ = std::fs::remove_file(paths.clusters());
        let leftovers = crate::process::stop_recorded(&paths.pids(), grace);
        if !leftovers.is_empty() {
            return Ok(format!(
                "no twin running from {}; stopped processes it left: {leftovers:?}",
                paths.dir.display()
            ));
        }
        return Ok(if stale {
            format!(
                "no twin running from {} (removed a stale pid file)",
                paths.dir.display()
            )
        } else {
            format!("no twin running from {}", paths.dir.display())
        });
    };
    // SAFETY: `kill` has no memory-safety preconditions; `pid` was checked to be a twin process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while is_twin_process(pid) {
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill_deadline = Instant::now() + Duration::from_secs(5);
    while is_twin_process(pid) && Instant::now() < kill_deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if is_twin_process(pid) {
        return Err(format!("the twin (pid {pid}) did not stop"));
    }
    let leftovers = crate::process::stop_recorded(&paths.pids(), grace);
    let _ = std::fs::remove_file(paths.pid());
    let _ = std::fs::remove_file(paths.clusters());
    let mut text = format!("twin stopped (pid {pid}): {}", paths.dir.display());
    if !leftovers.is_empty() {
        text.push_str(&format!(
            "\n  also stopped processes it left: {leftovers:?}"
        ));
    }
    Ok(text)
}

/// Whether the twin from `dir` runs, whether each cluster answers `/version`, and the state of
/// its Vault pods.
pub fn status(dir: &Path) -> Result<String, String> {
    let paths = TwinDir::existing(dir);
    let Some(pid) = paths.running_pid() else {
        return Err(format!("no twin running from {}", paths.dir.display()));
    };
    let mut text = format!("twin running (pid {pid}): {}\n", paths.dir.display());
    let scenario = read_scenario(&paths);
    for (name, url) in read_clusters(&paths) {
        let answer = probe_version(&url).unwrap_or_else(|e| format!("not answering: {e}"));
        text.push_str(&format!("  cluster {name}: {url} ({answer})\n"));
        if let Some(vault) = scenario.iter().find(|v| v["name"] == name.as_str()) {
            text.push_str(&format!(
                "    vault {} via {}, key service {}\n",
                vault["url"].as_str().unwrap_or("?"),
                vault["gateway"]["http"].as_str().unwrap_or("?"),
                vault["kms"].as_str().unwrap_or("?"),
            ));
            let namespace = vault["namespace"].as_str().unwrap_or("vault");
            let labels = if vault["chart"] == "openbao-helm" {
                "openbao"
            } else {
                "vault"
            };
            match http_get_json(&url, &format!("/api/v1/namespaces/{namespace}/pods")) {
                Ok(pods) => {
                    for pod in pods["items"].as_array().into_iter().flatten() {
                        text.push_str(&format!("    {}\n", describe_pod(pod, labels)));
                    }
                }
                Err(error) => text.push_str(&format!("    pods: {error}\n")),
            }
        }
    }
    text.push_str(&format!("  kubeconfig: {}", paths.kubeconfig().display()));
    Ok(text)
}

/// One line about a pod: name, phase, readiness, address, the status labels (prefixed
/// `labels`), restarts.
fn describe_pod(pod: &Value, labels: &str) -> String {
    let label = |name: &str| {
        pod.pointer(&format!("/metadata/labels/{name}"))
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string()
    };
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    let container = pod.pointer("/status/containerStatuses/0");
    let state = container
        .and_then(|c| c["state"].as_object())
        .and_then(|state| state.keys().next().cloned())
        .unwrap_or_else(|| "-".to_string());
    format!(
        "pod {}: {} {} ({}), ip {}, restarts {}, {labels}-active={} {labels}-sealed={} {labels}-initialized={}",
        pod.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        pod.pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        if ready { "Ready" } else { "NotReady" },
        state,
        pod.pointer("/status/podIP")
            .and_then(Value::as_str)
            .unwrap_or("-"),
        container
            .and_then(|c| c["restartCount"].as_u64())
            .unwrap_or(0),
        label(&format!("{labels}-active")),
        label(&format!("{labels}-sealed")),
        label(&format!("{labels}-initialized")),
    )
}

/// `GET <url>/version` over a plain socket; the `gitVersion` it reports.
fn probe_version(url: &str) -> Result<String, String> {
    let version = http_get_json(url, "/version")?;
    Ok(format!(
        "Kubernetes {}",
        version["gitVersion"].as_str().unwrap_or("?")
    ))
}

/// `GET <url><path>` over a plain socket, the JSON answer.
fn http_get_json(url: &str, path: &str) -> Result<Value, String> {
    let address = url.strip_prefix("http://").ok_or("not an http URL")?;
    let socket_address: std::net::SocketAddr = address.parse().map_err(|e| format!("{e}"))?;
    let timeout = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&socket_address, timeout)
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or("");
    serde_json::from_str(body.trim()).map_err(|e| format!("bad answer to {path}: {e}"))
}
