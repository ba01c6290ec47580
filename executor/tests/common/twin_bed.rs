//! What the end-to-end tests on the twin share: an HTTP client pinned to the scenario's
//! gateways, every secret read through a domain, planx's JSON summary, a planx process killed
//! after each new step, the Vault pods of both clusters, pods restarted until they unseal, and
//! the write probe's final check.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use planx::adapters::cluster::Cluster;
use serde_json::Value;
use twin::probe::WriteProbe;
use twin::scenario::Scenario;

/// A client with the domains pinned to the gateways, never through a proxy.
pub fn client(resolve: &[(String, SocketAddr)]) -> reqwest::Client {
    planx::adapters::vault::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy();
    for (host, address) in resolve {
        builder = builder.resolve(host, *address);
    }
    builder.build().unwrap()
}

/// `secret/app/*` through a domain (plain HTTP at its gateway), name to value.
pub async fn read_secrets(
    resolve: &[(String, SocketAddr)],
    domain: &str,
    token: &str,
) -> BTreeMap<String, String> {
    let http = client(resolve);
    // Right after a restart of every node, raft may elect once more: the ingress answers 503
    // for the moment the active pod is not Ready. Clients retry; so does this check, briefly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let list: Value = loop {
        let response = http
            .get(format!("http://{domain}/v1/secret/metadata/app?list=true"))
            .header("X-Vault-Token", token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        if status == 503 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        break serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("listing through {domain}: HTTP {status}: {e}: {body}"));
    };
    let mut secrets = BTreeMap::new();
    for key in list["data"]["keys"].as_array().expect("a list of secrets") {
        let key = key.as_str().unwrap();
        let secret: Value = http
            .get(format!("http://{domain}/v1/secret/data/app/{key}"))
            .header("X-Vault-Token", token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        secrets.insert(
            key.to_string(),
            secret["data"]["data"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    secrets
}

/// The `summary` event of planx's JSON output.
pub fn summary(stdout: &str) -> Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"))
}

/// Run `command` (planx with JSON output), SIGKILLed right after the first step that succeeds
/// and is not in `killed_after` yet; the summary when it finishes without such a step.
pub fn run_until_a_new_step_succeeds(
    mut command: Command,
    killed_after: &mut Vec<String>,
    output: &mut String,
) -> Option<Value> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        output.push_str(&line);
        output.push('\n');
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["event"] == "summary" {
            let _ = child.wait();
            return Some(event);
        }
        let step = event["step"].as_str().unwrap_or_default().to_string();
        if event["event"] == "ok" && !killed_after.contains(&step) {
            // SIGKILL: no chance to clean up.
            child.kill().unwrap();
            let _ = child.wait();
            killed_after.push(step);
            return None;
        }
    }
    let _ = child.wait();
    None
}

async fn connect(scenario: &Scenario, context: &str) -> Cluster {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(scenario.twin().kubeconfig_path()).unwrap();
    let namespace = scenario.vault(context).chart.namespace();
    Cluster::connect(&kubeconfig, context, namespace)
        .await
        .unwrap()
}

/// Every Vault pod of both clusters, name to uid.
pub async fn vault_pods(scenario: &Scenario) -> BTreeMap<String, String> {
    let mut pods = BTreeMap::new();
    for context in ["old", "new"] {
        let selector = format!(
            "app.kubernetes.io/name={}",
            scenario.vault(context).chart.name()
        );
        for pod in connect(scenario, context)
            .await
            .pods(&selector)
            .await
            .unwrap()
        {
            pods.insert(
                format!("{context}/{}", pod["metadata"]["name"].as_str().unwrap()),
                pod["metadata"]["uid"].as_str().unwrap().to_string(),
            );
        }
    }
    pods
}

/// `sys/seal-status` of the Vault pod at `address`, when it answers.
pub async fn seal_status(http: &reqwest::Client, address: SocketAddr) -> Option<Value> {
    let response = http
        .get(format!("http://{address}/v1/sys/seal-status"))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// Restart every pod of cluster `name`'s Vault and wait until each auto-unseals (`when` says
/// what the wait is about in a timeout's message).
pub async fn restart_pods_until_unsealed(scenario: &Scenario, name: &str, when: &str) {
    let http = client(&[]);
    let vault = scenario.vault(name);
    let cluster = connect(scenario, name).await;
    for ordinal in 0..vault.plan.replicas {
        cluster
            .restart_pod(
                &format!("{}-{ordinal}", vault.chart.release()),
                Duration::from_secs(120),
            )
            .await
            .unwrap();
    }
    for ordinal in 0..vault.plan.replicas {
        let address = vault.pod_address(ordinal).unwrap();
        let what = format!("{name} pod {ordinal} to auto-unseal {when}");
        super::eventually(&what, Duration::from_secs(120), || async {
            seal_status(&http, address)
                .await
                .is_some_and(|s| s["sealed"] == false)
        })
        .await;
    }
}

/// Stop the write probe and read every write it got acknowledged back through the domain of
/// `vault` (`old` or `new`): none may be lost, and every path wrote.
pub async fn assert_no_write_lost(probe: WriteProbe, scenario: &Scenario, vault: &str) {
    let logs = probe.stop().await;
    let token = scenario.vault("old").root_token().unwrap().to_string();
    let endpoint = scenario.vault(vault).ingress_endpoint("http").unwrap();
    let reports = twin::probe::check(&logs, &endpoint, &token).await;
    for report in &reports {
        println!("probe {report}");
    }
    assert_eq!(reports.len(), 2, "{reports:?}");
    for report in &reports {
        assert!(report.acknowledged > 0, "the probe wrote through {report}");
        assert!(
            report.lost.is_empty(),
            "acknowledged writes missing from the {vault} Vault: {report}"
        );
    }
}
