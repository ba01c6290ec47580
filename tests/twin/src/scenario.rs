//! Scenarios: clusters brought up with a Helm chart's objects (`vault-helm`, or `openbao-helm`
//! for `openbao-pair`), each Vault sealed by its own key service, initialised as asked; and the
//! files a person or a plan needs to drive them (kubeconfig, CA, secrets, a params file for
//! `plans/vault-transit-migration.yaml`, an env file). `vault-pair` is OLD (initialised, with
//! data) and NEW (initialised, empty).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::catalog::{self, ResourceType};
use crate::httpc::{self, Endpoint, Transport};
use crate::install::Chart;
use crate::keyservice::{KeyService, KeyServiceSpec};
use crate::kubeconfig::write_private;
use crate::kubelet::{Health, probe_health};
use crate::scenario_azure::{ScenarioAzure, start_azure};
use crate::store::WriteOptions;
use crate::twin::{Cluster, Twin, TwinOptions, create_private_dir};

/// The namespace the `vault-helm` chart's objects go into.
pub const NAMESPACE: &str = "vault";
/// The `vault-helm` release name (StatefulSet, ConfigMap `<release>-config`, Services,
/// Ingress, PDB).
pub const RELEASE: &str = "vault";
/// The ConfigMap key the chart's start script copies.
pub const CONFIG_KEY: &str = "extraconfig-from-values.hcl";
/// The userpass user the sample data gets.
pub const SAMPLE_USER: &str = "alice";

/// How a cluster's Vault is initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Left uninitialised (every pod sealed, `vault-initialized=false`).
    None,
    /// Initialised with recovery keys, no data.
    Empty,
    /// Initialised, with `secrets` kv-v2 secrets under `secret/app/`, policy `app-reader` and
    /// userpass user `alice`.
    WithData { secrets: usize },
}

/// One cluster of a scenario.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub name: String,
    /// The Ingress host (`vault.old.test`).
    pub domain: String,
    /// The transit key of the cluster's key service (`old-unseal`).
    pub key_name: String,
    pub replicas: u32,
    pub init: Init,
    /// Whether the configuration has the chart's `retry_join` towards the cluster's own pods;
    /// a Vault prepared for the live move has none (its pods join another cluster, by planx).
    pub retry_join: bool,
    /// How the pods sign in to Entra ID, when the scenario's seals are Azure Key Vault.
    pub identity: IdentityForm,
}

/// How a Vault's pods authenticate to Azure Key Vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityForm {
    /// A service principal: `client_id` and `client_secret` in the seal block.
    ServicePrincipal,
    /// AKS workload identity: a projected service-account token exchanged with Entra ID
    /// (`AZURE_FEDERATED_TOKEN_FILE`), `auth_method = "workload_identity"`.
    WorkloadIdentity,
}

/// What seals the scenario's Vaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealKind {
    /// Each cluster's own transit key service (a `bao` of its own).
    Transit,
    /// Azure Key Vault, one key vault per cluster, served by the twin's Azure emulator (OpenBao
    /// 2.6.2, the last with that seal built in).
    AzureKeyVault,
}

impl ClusterPlan {
    pub fn new(name: &str, init: Init) -> ClusterPlan {
        ClusterPlan {
            name: name.to_string(),
            domain: format!("vault.{name}.test"),
            key_name: format!("{name}-unseal"),
            replicas: 3,
            init,
            retry_join: true,
            identity: IdentityForm::ServicePrincipal,
        }
    }

    /// The Azure key vault of this cluster's seal (`kv-vault-old`).
    pub fn key_vault(&self) -> String {
        format!("kv-vault-{}", self.name)
    }

    /// The resource group of [`ClusterPlan::key_vault`] (`rg-vault-old`).
    pub fn resource_group(&self) -> String {
        format!("rg-vault-{}", self.name)
    }
}

/// What to bring up.
#[derive(Debug, Clone)]
pub struct ScenarioOptions {
    pub clusters: Vec<ClusterPlan>,
    /// The twin's directory; `None`: a private temporary one removed with the scenario.
    pub dir: Option<PathBuf>,
    /// The scheme of the Vault URLs written to the env and params files (`http` or `https`;
    /// the gateways answer both).
    pub url_scheme: String,
    /// The longest any one wait (pods, init, voters, routes) may take.
    pub timeout: Duration,
    pub seals: SealKind,
    /// The chart every cluster is installed with.
    pub chart: Chart,
}

impl ScenarioOptions {
    /// `vault-pair`: OLD initialised with 300 secrets, NEW initialised empty.
    pub fn vault_pair() -> ScenarioOptions {
        ScenarioOptions {
            clusters: vec![
                ClusterPlan::new("old", Init::WithData { secrets: 300 }),
                ClusterPlan::new("new", Init::Empty),
            ],
            dir: None,
            url_scheme: "http".to_string(),
            timeout: Duration::from_secs(90),
            seals: SealKind::Transit,
            chart: Chart::VaultHelm,
        }
    }

    /// `openbao-pair`: as `vault-pair`, both clusters installed with OpenBao's chart (release
    /// and namespace `openbao`, container `openbao`, `BAO_*` variables, `openbao-active`
    /// labels, `/openbao/...` paths).
    pub fn openbao_pair() -> ScenarioOptions {
        ScenarioOptions {
            chart: Chart::OpenbaoHelm,
            ..ScenarioOptions::vault_pair()
        }
    }

    /// `vault-pair-azure`: as `vault-pair`, each Vault sealed by Azure Key Vault through the
    /// twin's emulator (`kv-vault-old` with Azure RBAC, `kv-vault-new` with access policies);
    /// OLD's pods sign in as a service principal, NEW's as `new_identity`; URLs are https.
    pub fn vault_pair_azure(new_identity: IdentityForm) -> ScenarioOptions {
        let keyed = |name: &str, init: Init, identity: IdentityForm| ClusterPlan {
            key_name: format!("vault-unseal-{name}"),
            identity,
            ..ClusterPlan::new(name, init)
        };
        ScenarioOptions {
            clusters: vec![
                keyed(
                    "old",
                    Init::WithData { secrets: 300 },
                    IdentityForm::ServicePrincipal,
                ),
                keyed("new", Init::Empty, new_identity),
            ],
            url_scheme: "https".to_string(),
            seals: SealKind::AzureKeyVault,
            ..ScenarioOptions::vault_pair()
        }
    }

    /// `vault-pair-live`: OLD initialised with 300 secrets, NEW left uninitialised (its nodes
    /// join OLD's raft cluster in the live plan).
    pub fn vault_pair_live() -> ScenarioOptions {
        ScenarioOptions {
            clusters: vec![
                ClusterPlan::new("old", Init::WithData { secrets: 300 }),
                ClusterPlan {
                    retry_join: false,
                    ..ClusterPlan::new("new", Init::None)
                },
            ],
            ..ScenarioOptions::vault_pair()
        }
    }

    /// `vault-pair-azure-live`: as `vault-pair-azure`, with NEW left uninitialised and without
    /// retry_join (its nodes join OLD's raft cluster in the AKS live plan).
    pub fn vault_pair_azure_live(new_identity: IdentityForm) -> ScenarioOptions {
        let mut options = ScenarioOptions::vault_pair_azure(new_identity);
        let new = &mut options.clusters[1];
        new.init = Init::None;
        new.retry_join = false;
        options
    }

    /// Only the clusters given.
    pub fn with_clusters(clusters: Vec<ClusterPlan>) -> ScenarioOptions {
        ScenarioOptions {
            clusters,
            ..ScenarioOptions::vault_pair()
        }
    }

    pub fn dir(mut self, dir: &Path) -> ScenarioOptions {
        self.dir = Some(dir.to_path_buf());
        self
    }
}

/// What `sys/init` gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitKeys {
    pub root_token: String,
    /// Base64, as `sys/unseal` takes them.
    pub recovery_keys: Vec<String>,
}

/// What seals one cluster's Vault.
#[derive(Debug, Clone)]
pub enum ClusterSeal {
    Transit(KeyService),
    Azure(AzureSeal),
}

/// An Azure Key Vault seal and how the pods reach it.
#[derive(Debug, Clone)]
pub struct AzureSeal {
    pub tenant_id: String,
    pub vault_name: String,
    pub key_name: String,
    /// The client id of the identity the pods sign in as.
    pub client_id: String,
    /// Its client secret, in the service-principal form.
    pub client_secret: Option<String>,
    pub form: IdentityForm,
    /// `http://ip:port` of the twin's Azure proxy.
    pub proxy_url: String,
    /// The CA the proxy's certificates chain to.
    pub ca_pem: String,
}

/// The ConfigMap holding the CA of the twin's Azure proxy, and where pods mount it.
pub const PROXY_CA_CONFIGMAP: &str = "azure-proxy-ca";
pub const PROXY_CA_DIR: &str = "/vault/userconfig/azure-proxy-ca";
/// Where AKS workload identity mounts the service-account token.
pub const FEDERATED_TOKEN_DIR: &str = "/var/run/secrets/azure/tokens";
pub const FEDERATED_TOKEN_FILE: &str = "azure-identity-token";

/// One cluster's Vault in a running scenario.
#[derive(Debug, Clone)]
pub struct VaultCluster {
    pub plan: ClusterPlan,
    /// The chart it is installed with.
    pub chart: Chart,
    pub cluster: Cluster,
    pub seal: ClusterSeal,
    pub keys: Option<InitKeys>,
    /// The userpass password of `alice` (with sample data).
    pub sample_password: Option<String>,
    ca_pem: String,
}

impl VaultCluster {
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// The transit key service of a transit scenario; panics for an Azure one.
    pub fn key_service(&self) -> &KeyService {
        match &self.seal {
            ClusterSeal::Transit(key_service) => key_service,
            ClusterSeal::Azure(_) => panic!(
                "cluster {} is sealed by Azure Key Vault, not by a transit key service",
                self.plan.name
            ),
        }
    }

    pub fn root_token(&self) -> Option<&str> {
        self.keys.as_ref().map(|keys| keys.root_token.as_str())
    }

    /// The address of pod `ordinal`'s Vault API.
    pub fn pod_address(&self, ordinal: u32) -> Option<SocketAddr> {
        let ip =
            self.cluster
                .node()?
                .pod_ip(self.chart.namespace(), self.chart.release(), ordinal)?;
        Some(SocketAddr::from((ip, 8200)))
    }

    /// Plain HTTP to pod `ordinal`.
    pub fn pod_endpoint(&self, ordinal: u32) -> Option<Endpoint> {
        self.pod_address(ordinal).map(Endpoint::plain)
    }

    /// The cluster's ingress gateway addresses.
    pub fn gateway(&self) -> Option<crate::gateway::GatewayAddresses> {
        self.cluster.node().map(|node| node.gateway)
    }

    /// The Vault through the ingress, as a client outside the cluster reaches it: `scheme`
    /// `http` or `https` (verified against the twin's CA), `Host` the domain.
    pub fn ingress_endpoint(&self, scheme: &str) -> Option<Endpoint> {
        let gateway = self.gateway()?;
        ingress_endpoint(
            gateway.for_scheme(scheme),
            scheme,
            &self.plan.domain,
            &self.ca_pem,
        )
    }

    /// The ordinal of the pod whose Vault is active, if one is.
    pub async fn active_pod(&self) -> Option<u32> {
        for ordinal in 0..self.plan.replicas {
            let address = self.pod_address(ordinal)?;
            if probe_health(address, false)
                .await
                .is_some_and(|h| h.active())
            {
                return Some(ordinal);
            }
        }
        None
    }
}

/// An endpoint reaching `domain` through a gateway at `address`.
pub fn ingress_endpoint(
    address: SocketAddr,
    scheme: &str,
    domain: &str,
    ca_pem: &str,
) -> Option<Endpoint> {
    let transport = if scheme == "https" {
        Transport::Tls {
            config: httpc::verifying_client_config(ca_pem).ok()?,
            server_name: Some(domain.to_string()),
        }
    } else {
        Transport::Plain
    };
    Some(Endpoint {
        address,
        transport,
        host: domain.to_string(),
        timeout: Duration::from_secs(10),
    })
}

/// A running scenario; dropping it stops every server and process.
#[derive(Debug)]
pub struct Scenario {
    pub vaults: Vec<VaultCluster>,
    pub options: ScenarioOptions,
    /// How long `start` took.
    pub startup: Duration,
    /// The emulated Azure tenant of `vault-pair-azure`.
    pub azure: Option<ScenarioAzure>,
    // Dropped last: the key services' processes belong to the twin.
    twin: Twin,
}

fn resource(group: &str, plural: &str) -> &'static ResourceType {
    catalog::find(group, "v1", plural).expect("the scenario's resource types are in the catalogue")
}

/// The chart's `extraconfig-from-values.hcl` for `replicas` raft pods sealed by `seal`, with a
/// `retry_join` towards each pod when `retry_join`.
pub fn chart_config(chart: Chart, replicas: u32, retry_join: bool, seal: &ClusterSeal) -> String {
    let replicas = if retry_join { replicas } else { 0 };
    let release = chart.release();
    let root = chart.root();
    let retry_join: String = (0..replicas)
        .map(|ordinal| {
            format!(
                "  retry_join {{\n    leader_api_addr = \"http://{release}-{ordinal}.{release}-internal:8200\"\n  }}\n"
            )
        })
        .collect();
    let seal = match seal {
        ClusterSeal::Transit(key_service) => format!(
            r#"seal "transit" {{
  address         = "{address}"
  token           = "{token}"
  key_name        = "{key}"
  mount_path      = "transit/"
  disable_renewal = "true"
}}"#,
            address = key_service.address(),
            token = key_service.seal_token(),
            key = key_service.key_name(),
        ),
        ClusterSeal::Azure(azure) => {
            let credential = match (&azure.form, &azure.client_secret) {
                (IdentityForm::ServicePrincipal, Some(secret)) => {
                    format!("  client_secret = \"{secret}\"\n")
                }
                _ => "  auth_method   = \"workload_identity\"\n".to_string(),
            };
            format!(
                "seal \"azurekeyvault\" {{\n  tenant_id     = \"{}\"\n  client_id     = \"{}\"\n{credential}  vault_name    = \"{}\"\n  key_name      = \"{}\"\n}}",
                azure.tenant_id, azure.client_id, azure.vault_name, azure.key_name
            )
        }
    };
    format!(
        r#"ui = true

listener "tcp" {{
  tls_disable = 1
  address = "[::]:8200"
  cluster_address = "[::]:8201"
}}

storage "raft" {{
  path = "{root}/data"
{retry_join}}}

{seal}

service_registration "kubernetes" {{}}
"#
    )
}

fn chart_labels(chart: Chart) -> Value {
    json!({
        "app.kubernetes.io/name": chart.name(),
        "app.kubernetes.io/instance": chart.release(),
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": chart.chart_label(),
    })
}

fn selector(chart: Chart) -> Value {
    json!({"app.kubernetes.io/name": chart.name(), "app.kubernetes.io/instance": chart.release(), "component": "server"})
}

/// The chart's objects for one cluster, in creation order: (resource, object).
pub fn chart_objects(
    chart: Chart,
    plan: &ClusterPlan,
    seal: &ClusterSeal,
) -> Vec<(&'static ResourceType, Value)> {
    let (namespace, release, root, env_prefix) = (
        chart.namespace(),
        chart.release(),
        chart.root(),
        chart.env_prefix(),
    );
    let metadata = |name: &str| json!({"name": name, "namespace": namespace, "labels": chart_labels(chart), "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}});
    let ports = json!([
        {"name": "http", "port": 8200, "targetPort": 8200},
        {"name": "https-internal", "port": 8201, "targetPort": 8201},
    ]);
    let service = |name: &str, extra_selector: Value, headless: bool| {
        let mut selector = selector(chart);
        if let (Some(all), Some(extra)) = (selector.as_object_mut(), extra_selector.as_object()) {
            for (key, value) in extra {
                all.insert(key.clone(), value.clone());
            }
        }
        let mut spec =
            json!({"ports": ports, "selector": selector, "publishNotReadyAddresses": true});
        if headless {
            spec["clusterIP"] = json!("None");
        }
        json!({"metadata": metadata(name), "spec": spec})
    };
    let mut statefulset_labels = chart_labels(chart);
    statefulset_labels["component"] = json!("server");
    let env = json!([
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": format!("{env_prefix}K8S_POD_NAME"), "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": format!("{env_prefix}K8S_NAMESPACE"), "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": format!("{env_prefix}ADDR"), "value": "http://127.0.0.1:8200"},
        {"name": format!("{env_prefix}API_ADDR"), "value": "http://$(POD_IP):8200"},
        {"name": "SKIP_CHOWN", "value": "true"},
        {"name": "SKIP_SETCAP", "value": "true"},
        {"name": "HOSTNAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": format!("{env_prefix}CLUSTER_ADDR"), "value": format!("https://$(HOSTNAME).{release}-internal:8201")},
        {"name": "HOME", "value": format!("/home/{}", chart.name())},
    ]);
    let mut env = env;
    // The image names the release the twin runs (OpenBao 2.6.2 for the Azure Key Vault seal).
    let image = match seal {
        ClusterSeal::Transit(_) => "quay.io/openbao/openbao:2.7.2",
        ClusterSeal::Azure(_) => "quay.io/openbao/openbao:2.6.2",
    };
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": format!("{release}-config")}}),
        json!({"name": "home", "emptyDir": {}}),
    ];
    let mut mounts = vec![
        json!({"name": "data", "mountPath": format!("{root}/data")}),
        json!({"name": "config", "mountPath": format!("{root}/config")}),
        json!({"name": "home", "mountPath": format!("/home/{}", chart.name())}),
    ];
    let mut pod_labels = json!({
        "helm.sh/chart": chart.chart_label(),
        "app.kubernetes.io/name": chart.name(),
        "app.kubernetes.io/instance": release,
        "component": "server",
    });
    if let ClusterSeal::Azure(azure) = seal {
        // The corporate-proxy setup: Azure only through the proxy, trusting its CA. HTTP_PROXY
        // too, so that a plain-HTTP call (the managed-identity endpoint) is refused by it.
        if let Some(list) = env.as_array_mut() {
            list.extend([
                json!({"name": "HTTPS_PROXY", "value": azure.proxy_url}),
                json!({"name": "HTTP_PROXY", "value": azure.proxy_url}),
                json!({"name": "NO_PROXY", "value": format!("localhost,127.0.0.0/8,.{release}-internal,.svc")}),
                json!({"name": "SSL_CERT_FILE", "value": format!("{PROXY_CA_DIR}/ca.pem")}),
            ]);
            if azure.form == IdentityForm::WorkloadIdentity {
                // What the workload-identity webhook injects.
                list.extend([
                    json!({"name": "AZURE_CLIENT_ID", "value": azure.client_id}),
                    json!({"name": "AZURE_TENANT_ID", "value": azure.tenant_id}),
                    json!({"name": "AZURE_FEDERATED_TOKEN_FILE", "value": format!("{FEDERATED_TOKEN_DIR}/{FEDERATED_TOKEN_FILE}")}),
                    json!({"name": "AZURE_AUTHORITY_HOST", "value": "https://login.microsoftonline.com/"}),
                ]);
            }
        }
        volumes.push(json!({"name": "azure-proxy-ca", "configMap": {"name": PROXY_CA_CONFIGMAP}}));
        mounts.push(json!({"name": "azure-proxy-ca", "mountPath": PROXY_CA_DIR, "readOnly": true}));
        if azure.form == IdentityForm::WorkloadIdentity {
            pod_labels["azure.workload.identity/use"] = json!("true");
            volumes.push(json!({"name": "azure-identity-token", "projected": {"sources": [{"serviceAccountToken": {
                "audience": crate::azure::TOKEN_EXCHANGE_AUDIENCE, "expirationSeconds": 3600, "path": FEDERATED_TOKEN_FILE,
            }}]}}));
            mounts.push(json!({"name": "azure-identity-token", "mountPath": FEDERATED_TOKEN_DIR, "readOnly": true}));
        }
    }
    let statefulset = json!({
        "metadata": metadata(release),
        "spec": {
            "serviceName": format!("{release}-internal"),
            "podManagementPolicy": "Parallel",
            "replicas": plan.replicas,
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": selector(chart)},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "serviceAccountName": release,
                    "securityContext": {"runAsNonRoot": true, "runAsGroup": 1000, "runAsUser": 100, "fsGroup": 1000},
                    "volumes": volumes,
                    "containers": [{
                        "name": chart.name(),
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-ec"],
                        "args": [chart.start_script()],
                        "env": env,
                        "volumeMounts": mounts,
                        "ports": [
                            {"containerPort": 8200, "name": "http"},
                            {"containerPort": 8201, "name": "https-internal"},
                            {"containerPort": 8202, "name": "http-rep"},
                        ],
                        "readinessProbe": {
                            "exec": {"command": ["/bin/sh", "-ec", format!("{} status -tls-skip-verify", chart.binary())]},
                            "failureThreshold": 2, "initialDelaySeconds": 5, "periodSeconds": 5,
                            "successThreshold": 1, "timeoutSeconds": 3,
                        },
                    }],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
            }],
        },
    });
    // The label the server's service registration sets on the active node.
    let active_label = format!("{}-active", chart.name());
    let mut objects = vec![
        (
            resource("", "namespaces"),
            json!({"metadata": {"name": namespace}}),
        ),
        (
            resource("", "configmaps"),
            json!({"metadata": metadata(&format!("{release}-config")), "data": {CONFIG_KEY: chart_config(chart, plan.replicas, plan.retry_join, seal)}}),
        ),
        (resource("", "services"), service(release, json!({}), false)),
        (
            resource("", "services"),
            service(
                &format!("{release}-active"),
                json!({active_label.clone(): "true"}),
                false,
            ),
        ),
        (
            resource("", "services"),
            service(
                &format!("{release}-standby"),
                json!({active_label: "false"}),
                false,
            ),
        ),
        (
            resource("", "services"),
            service(&format!("{release}-internal"), json!({}), true),
        ),
        (
            resource("networking.k8s.io", "ingresses"),
            json!({"metadata": metadata(release), "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": plan.domain, "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": format!("{release}-active"), "port": {"number": 8200}}},
                }]}}],
            }}),
        ),
        (
            resource("policy", "poddisruptionbudgets"),
            json!({"metadata": metadata(release), "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(chart)}}}),
        ),
        (resource("apps", "statefulsets"), statefulset),
    ];
    if let ClusterSeal::Azure(azure) = seal {
        objects.insert(
            1,
            (
                resource("", "configmaps"),
                json!({"metadata": {"name": PROXY_CA_CONFIGMAP, "namespace": namespace}, "data": {"ca.pem": azure.ca_pem}}),
            ),
        );
    }
    objects
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() > deadline => {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}: {last}"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn expect(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    ok: &[u16],
) -> Result<Value, String> {
    let (code, answer) = endpoint
        .json(method, path, token, body.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if ok.contains(&code) {
        Ok(answer)
    } else {
        Err(format!("{method} {path} answered {code}: {answer}"))
    }
}

/// Initialises one cluster's Vault as its plan says and waits until it is served through the
/// ingress.
async fn initialise(vault: &mut VaultCluster, timeout: Duration) -> Result<(), String> {
    let name = vault.plan.name.clone();
    let release = vault.chart.release();
    let first = vault
        .pod_endpoint(0)
        .ok_or_else(|| format!("cluster {name} has no address for pod {release}-0"))?;
    wait_for(&format!("{name}: {release}-0 answers"), timeout, || async {
        probe_health(first.address, false)
            .await
            .ok_or_else(|| "no answer".to_string())
    })
    .await?;
    if vault.plan.init == Init::None {
        return Ok(());
    }
    let init = expect(
        &first,
        "PUT",
        "/v1/sys/init",
        None,
        Some(json!({"recovery_shares": 3, "recovery_threshold": 2})),
        &[200],
    )
    .await
    .map_err(|e| format!("{name}: init failed: {e}"))?;
    let keys = InitKeys {
        root_token: init["root_token"].as_str().unwrap_or("").to_string(),
        recovery_keys: init["recovery_keys_base64"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    };
    if keys.root_token.is_empty() {
        return Err(format!("{name}: sys/init gave no root token: {init}"));
    }
    let token = keys.root_token.clone();
    vault.keys = Some(keys);
    wait_for(&format!("{name}: {release}-0 active"), timeout, || async {
        match probe_health(first.address, false).await {
            Some(health) if health.active() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    expect(
        &first,
        "POST",
        "/v1/sys/storage/raft/autopilot/configuration",
        Some(&token),
        Some(json!({"server_stabilization_time": "1s"})),
        &[200, 204],
    )
    .await
    .map_err(|e| format!("{name}: {e}"))?;
    if let Init::WithData { secrets } = vault.plan.init {
        vault.sample_password = Some(
            write_sample_data(&first, &token, secrets)
                .await
                .map_err(|e| format!("{name}: {e}"))?,
        );
    }
    let replicas = vault.plan.replicas as usize;
    wait_for(
        &format!("{name}: {replicas} raft voters"),
        timeout,
        || async {
            let answer = expect(
                &first,
                "GET",
                "/v1/sys/storage/raft/configuration",
                Some(&token),
                None,
                &[200],
            )
            .await?;
            let voters = answer
                .pointer("/data/config/servers")
                .and_then(Value::as_array)
                .map(|servers| servers.iter().filter(|s| s["voter"] == true).count())
                .unwrap_or(0);
            if voters == replicas {
                Ok(())
            } else {
                Err(format!("{voters} voters"))
            }
        },
    )
    .await?;
    let through_ingress = vault
        .ingress_endpoint("http")
        .ok_or_else(|| format!("{name}: no ingress gateway"))?;
    wait_for(
        &format!("{name}: the Vault answers through the ingress"),
        timeout,
        || async {
            expect(
                &through_ingress,
                "GET",
                "/v1/sys/health",
                None,
                None,
                &[200],
            )
            .await
        },
    )
    .await?;
    Ok(())
}

/// kv-v2 at `secret/` with `count` secrets `secret/app/sNNN`, policy `app-reader`, userpass
/// user `alice`; the user's password.
async fn write_sample_data(vault: &Endpoint, token: &str, count: usize) -> Result<String, String> {
    let token = Some(token);
    expect(
        vault,
        "POST",
        "/v1/sys/mounts/secret",
        token,
        Some(json!({"type": "kv", "options": {"version": "2"}})),
        &[200, 204],
    )
    .await?;
    wait_for("the kv-v2 mount", Duration::from_secs(30), || async {
        expect(vault, "GET", "/v1/secret/config", token, None, &[200]).await
    })
    .await?;
    let mut tasks = tokio::task::JoinSet::new();
    let writers = 8;
    for writer in 0..writers {
        let vault = vault.clone();
        let token = token.map(str::to_string);
        tasks.spawn(async move {
            for index in (writer..count).step_by(writers) {
                expect(
                    &vault,
                    "POST",
                    &format!("/v1/secret/data/app/s{index:03}"),
                    token.as_deref(),
                    Some(json!({"data": {"value": format!("v-{index:03}")}})),
                    &[200],
                )
                .await?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| format!("a writer failed: {e}"))??;
    }
    expect(
        vault,
        "PUT",
        "/v1/sys/policies/acl/app-reader",
        token,
        Some(json!({"policy": "path \"secret/data/*\" { capabilities = [\"read\"] }\npath \"secret/metadata/*\" { capabilities = [\"list\", \"read\"] }\n"})),
        &[200, 204],
    )
    .await?;
    expect(
        vault,
        "POST",
        "/v1/sys/auth/userpass",
        token,
        Some(json!({"type": "userpass"})),
        &[200, 204],
    )
    .await?;
    let password = uuid::Uuid::new_v4().simple().to_string();
    expect(
        vault,
        "POST",
        &format!("/v1/auth/userpass/users/{SAMPLE_USER}"),
        token,
        Some(json!({"password": password, "token_policies": "app-reader"})),
        &[200, 204],
    )
    .await?;
    expect(
        vault,
        "POST",
        &format!("/v1/auth/userpass/login/{SAMPLE_USER}"),
        None,
        Some(json!({"password": password})),
        &[200],
    )
    .await?;
    Ok(password)
}

impl Scenario {
    /// Brings the scenario up from async code (the twin runs on a runtime of its own).
    pub async fn start_async(options: ScenarioOptions) -> Result<Scenario, String> {
        let started = Instant::now();
        let names: Vec<&str> = options.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut twin_options = TwinOptions::new(&names).with_workloads();
        twin_options.dir = options.dir.clone();
        if options.seals == SealKind::AzureKeyVault {
            twin_options.openbao = crate::bao::OpenBao::WithAzureSeal;
        }
        let twin = Twin::start_with(twin_options).map_err(|e| e.to_string())?;
        let shared = twin.shared().cloned().ok_or("the twin runs no workloads")?;
        let bao = shared.bao.clone()?;
        let azure = match options.seals {
            SealKind::Transit => None,
            SealKind::AzureKeyVault => Some(start_azure(&twin, &shared, &options.clusters)?),
        };
        let mut vaults = Vec::new();
        for (index, plan) in options.clusters.iter().enumerate() {
            let seal = match &azure {
                Some(azure) => ClusterSeal::Azure(azure.seal_of(plan)?),
                None => {
                    let ip = shared
                        .slot
                        .key_service_ip(index as u32)
                        .ok_or("too many key services")?;
                    let dir = twin.dir().join("kms").join(&plan.name);
                    create_private_dir(&dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                    ClusterSeal::Transit(
                        KeyService::start_new(
                            KeyServiceSpec {
                                name: plan.name.clone(),
                                key_name: plan.key_name.clone(),
                                address: SocketAddr::from((ip, 8200)),
                            },
                            bao.clone(),
                            dir,
                            shared.processes.clone(),
                            twin.runtime().clone(),
                        )
                        .await?,
                    )
                }
            };
            let cluster = twin.cluster(&plan.name).clone();
            for (resource, object) in chart_objects(options.chart, plan, &seal) {
                let namespace = if resource.namespaced {
                    options.chart.namespace()
                } else {
                    ""
                };
                cluster
                    .store()
                    .create(resource, namespace, object, &WriteOptions::default())
                    .map_err(|e| {
                        format!(
                            "{}: cannot create a {}: {}",
                            plan.name, resource.kind, e.message
                        )
                    })?;
            }
            vaults.push(VaultCluster {
                plan: plan.clone(),
                chart: options.chart,
                cluster,
                seal,
                keys: None,
                sample_password: None,
                ca_pem: shared.authority.ca_pem().to_string(),
            });
        }
        let timeout = options.timeout;
        let results = futures_util::future::join_all(
            vaults.iter_mut().map(|vault| initialise(vault, timeout)),
        )
        .await;
        for result in results {
            result?;
        }
        let scenario = Scenario {
            vaults,
            options,
            startup: started.elapsed(),
            azure,
            twin,
        };
        scenario.write_files()?;
        Ok(Scenario {
            startup: started.elapsed(),
            ..scenario
        })
    }

    /// Brings the scenario up from synchronous code.
    pub fn start(options: ScenarioOptions) -> Result<Scenario, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        runtime.block_on(Scenario::start_async(options))
    }

    pub fn twin(&self) -> &Twin {
        &self.twin
    }

    /// The Vault of cluster `name`; panics with the known names if there is none.
    pub fn vault(&self, name: &str) -> &VaultCluster {
        self.vaults
            .iter()
            .find(|v| v.plan.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.vaults.iter().map(|v| v.plan.name.as_str()).collect();
                panic!("the scenario has no cluster {name:?} (it has {names:?})")
            })
    }

    /// `host=ip:port` for every domain, for URLs with `scheme` (as curl's `--resolve` pins).
    pub fn resolve_pairs(&self, scheme: &str) -> Vec<(String, SocketAddr)> {
        self.vaults
            .iter()
            .filter_map(|vault| {
                Some((
                    vault.plan.domain.clone(),
                    vault.gateway()?.for_scheme(scheme),
                ))
            })
            .collect()
    }

    /// The files of the twin's directory (see `ScenarioFiles`).
    pub fn files(&self) -> ScenarioFiles {
        ScenarioFiles {
            dir: self.twin.dir().to_path_buf(),
        }
    }

    fn write_files(&self) -> Result<(), String> {
        let files = self.files();
        let secrets = files.secrets_dir();
        create_private_dir(&secrets)
            .map_err(|e| format!("cannot create {}: {e}", secrets.display()))?;
        let write = |path: &Path, text: &str| {
            write_private(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        let scheme = self.options.url_scheme.as_str();
        let shell = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
        let mut env = format!(
            "# Written by `twin up`; use it with: . {}\nexport KUBECONFIG={}\nexport TWIN_DIR={}\nexport TWIN_CA_FILE={}\n",
            shell(&files.env().display().to_string()),
            shell(&self.twin.kubeconfig_path().display().to_string()),
            shell(&files.dir.display().to_string()),
            shell(&files.ca().display().to_string()),
        );
        let mut summary = Vec::new();
        for vault in &self.vaults {
            let name = vault.name();
            let upper = name.to_uppercase().replace('-', "_");
            let gateway = vault.gateway().ok_or("no gateway")?;
            env.push_str(&format!(
                "export {upper}_API_URL={}\n",
                shell(&vault.cluster.url())
            ));
            env.push_str(&format!(
                "export {upper}_VAULT_URL={}\n",
                shell(&gateway.url(scheme, &vault.plan.domain))
            ));
            let kms = match &vault.seal {
                ClusterSeal::Transit(key_service) => {
                    env.push_str(&format!(
                        "export {upper}_KMS_ADDR={}\n",
                        shell(&key_service.address())
                    ));
                    let kms_token = files.secret(&format!("{name}-kms-token"));
                    write(&kms_token, &format!("{}\n", key_service.seal_token()))?;
                    env.push_str(&format!(
                        "export {upper}_KMS_TOKEN_FILE={}\n",
                        shell(&kms_token.display().to_string())
                    ));
                    key_service.address()
                }
                ClusterSeal::Azure(azure) => {
                    env.push_str(&format!(
                        "export {upper}_KEY_VAULT={}\n",
                        shell(&azure.vault_name)
                    ));
                    format!("azurekeyvault {}/{}", azure.vault_name, azure.key_name)
                }
            };
            if let Some(keys) = &vault.keys {
                let root = files.secret(&format!("{name}-root-token"));
                write(&root, &format!("{}\n", keys.root_token))?;
                let recovery = files.secret(&format!("{name}-recovery-keys"));
                write(
                    &recovery,
                    &keys
                        .recovery_keys
                        .iter()
                        .map(|k| format!("{k}\n"))
                        .collect::<String>(),
                )?;
                env.push_str(&format!(
                    "export {upper}_ROOT_TOKEN_FILE={}\n",
                    shell(&root.display().to_string())
                ));
                env.push_str(&format!(
                    "export {upper}_RECOVERY_KEYS_FILE={}\n",
                    shell(&recovery.display().to_string())
                ));
            }
            if let Some(password) = &vault.sample_password {
                let userpass = files.secret(&format!("{name}-userpass"));
                write(&userpass, &format!("{SAMPLE_USER}\n{password}\n"))?;
                env.push_str(&format!(
                    "export {upper}_USERPASS_FILE={}\n",
                    shell(&userpass.display().to_string())
                ));
            }
            summary.push(json!({
                "name": name,
                "api": vault.cluster.url(),
                "domain": vault.plan.domain,
                "url": gateway.url(scheme, &vault.plan.domain),
                "gateway": {"http": gateway.http.to_string(), "https": gateway.https.to_string()},
                "kms": kms,
                "initialised": vault.keys.is_some(),
                "chart": vault.chart.flavour(),
                "namespace": vault.chart.namespace(),
            }));
        }
        let resolve: Vec<String> = self
            .resolve_pairs(scheme)
            .iter()
            .map(|(host, address)| format!("{host}={address}"))
            .collect();
        env.push_str(&format!("export RESOLVE={}\n", shell(&resolve.join(" "))));
        let curl: Vec<String> = self
            .resolve_pairs(scheme)
            .iter()
            .map(|(host, address)| {
                let default = if scheme == "http" { 80 } else { 443 };
                format!(
                    "--connect-to {host}:{default}:{}:{}",
                    address.ip(),
                    address.port()
                )
            })
            .collect();
        env.push_str(&format!(
            "export CURL_CONNECT_TO={}\n",
            shell(&curl.join(" "))
        ));
        if let Some(data) = self
            .vaults
            .iter()
            .find(|v| matches!(v.plan.init, Init::WithData { .. }))
        {
            let name = data.name();
            env.push_str(&format!(
                "export RECOVERY_KEYS_FILE={}\n",
                shell(
                    &files
                        .secret(&format!("{name}-recovery-keys"))
                        .display()
                        .to_string()
                )
            ));
        }
        if let (Some(old), Some(new)) = (
            self.vaults.iter().find(|v| v.name() == "old"),
            self.vaults.iter().find(|v| v.name() == "new"),
        ) {
            let reference = |name: &str| format!("file:{}", files.secret(name).display());
            let (namespace, flavour) =
                (self.options.chart.namespace(), self.options.chart.flavour());
            let params = match (&old.seal, &new.seal, &self.azure) {
                (ClusterSeal::Azure(old_seal), ClusterSeal::Azure(new_seal), Some(azure)) => {
                    env.push_str(&self.azure_env(azure, &shell, &write)?);
                    // A service principal's secret goes to the plan by reference.
                    let client_secret = match &new_seal.client_secret {
                        Some(secret) => {
                            write(
                                &files.secret("new-seal-client-secret"),
                                &format!("{secret}\n"),
                            )?;
                            format!(
                                "new_vault_client_secret: {}\n",
                                reference("new-seal-client-secret")
                            )
                        }
                        None => String::new(),
                    };
                    format!(
                        "# Written by `twin up` for plans/vault-aks-migration{}.yaml (the twin's clusters old and new).\n\
                         old_context: old\nnew_context: new\nold_namespace: {namespace}\nnew_namespace: {namespace}\n\
                         flavour: {flavour}\n\
                         old_domain: {}\nnew_domain: {}\nexpected_replicas: {}\n\
                         tenant_id: {}\nnew_vault_msi_client_id: {}\n\
                         old_key_vault_name: {}\nold_unseal_key_name: {}\n\
                         new_key_vault_name: {}\nnew_unseal_key_name: {}\n\
                         key_vault_subscription: {}\n\
                         old_key_vault_resource_group: {}\nnew_key_vault_resource_group: {}\n\
                         old_admin_token: {}\n{}old_recovery_keys: {}\n{client_secret}",
                        if new.keys.is_some() { "" } else { "-live" },
                        old.plan.domain,
                        new.plan.domain,
                        old.plan.replicas,
                        azure.tenant_id,
                        new_seal.client_id,
                        old_seal.vault_name,
                        old_seal.key_name,
                        new_seal.vault_name,
                        new_seal.key_name,
                        azure.subscription,
                        old.plan.resource_group(),
                        new.plan.resource_group(),
                        reference("old-root-token"),
                        // An uninitialised NEW (vault-pair-azure-live) has no token yet; the
                        // live plan's Ingress reaches the pods, which serve plain HTTP here.
                        if new.keys.is_some() {
                            format!("new_admin_token: {}\n", reference("new-root-token"))
                        } else {
                            "new_backend_protocol: HTTP\n".to_string()
                        },
                        reference("old-recovery-keys"),
                    )
                }
                _ => format!(
                    "# Written by `twin up` for plans/vault-transit-migration.yaml (the twin's clusters old and new).\n\
                 old_context: old\nnew_context: new\nold_namespace: {namespace}\nnew_namespace: {namespace}\n\
                 flavour: {flavour}\n\
                 url_scheme: {scheme}\nold_domain: {}\nnew_domain: {}\nexpected_replicas: {}\n\
                 old_kms_address: {}\nold_kms_key: {}\nold_kms_token: {}\n\
                 new_kms_address: {}\nnew_kms_key: {}\nnew_kms_token: {}\n\
                 old_admin_token: {}\n{}old_recovery_keys: {}\n",
                    old.plan.domain,
                    new.plan.domain,
                    old.plan.replicas,
                    old.key_service().address(),
                    old.plan.key_name,
                    reference("old-kms-token"),
                    new.key_service().address(),
                    new.plan.key_name,
                    reference("new-kms-token"),
                    reference("old-root-token"),
                    // An uninitialised NEW (vault-pair-live) has no token yet.
                    if new.keys.is_some() {
                        format!("new_admin_token: {}\n", reference("new-root-token"))
                    } else {
                        String::new()
                    },
                    reference("old-recovery-keys"),
                ),
            };
            write(&files.params(), &params)?;
            env.push_str(&format!(
                "export PARAMS_FILE={}\n",
                shell(&files.params().display().to_string()),
            ));
            if new.keys.is_some() {
                write(
                    &files.online_params(),
                    &format!(
                        "# Written by `twin up`: what plans/vault-transit-migration-online.yaml needs beyond params.yaml\n\
                     # (planx apply PLAN --params params.yaml --params online-params.yaml).\n\
                     new_recovery_keys: {}\n",
                        reference("new-recovery-keys")
                    ),
                )?;
                env.push_str(&format!(
                    "export ONLINE_PARAMS_FILE={}\n",
                    shell(&files.online_params().display().to_string()),
                ));
            }
        }
        write(&files.env(), &env)?;
        write(
            &files.summary(),
            &serde_json::to_string_pretty(&json!({"url_scheme": scheme, "clusters": summary}))
                .unwrap_or_default(),
        )?;
        Ok(())
    }
}

impl Scenario {
    /// The env lines that let planx (and `curl`) reach the twin's Azure as the operator:
    /// `AZURE_*` of the operator's service principal (its secret read from a 0600 file), the
    /// proxy with the twin's domains and loopback excepted, and the twin's CA.
    fn azure_env(
        &self,
        azure: &ScenarioAzure,
        shell: &dyn Fn(&str) -> String,
        write: &dyn Fn(&Path, &str) -> Result<(), String>,
    ) -> Result<String, String> {
        let files = self.files();
        let secret = files.secret("azure-operator-client-secret");
        write(&secret, &format!("{}\n", azure.operator_secret))?;
        let domains: Vec<String> = self
            .vaults
            .iter()
            .map(|vault| vault.plan.domain.clone())
            .collect();
        Ok(format!(
            "# planx signs in to the twin's Azure as the operator, through the twin's proxy (the only way to it).\n\
             export AZURE_TENANT_ID={}\nexport AZURE_CLIENT_ID={}\nexport AZURE_CLIENT_SECRET=\"$(cat {})\"\n\
             export HTTPS_PROXY={}\nexport NO_PROXY={}\nexport PLANX_CA_FILE={}\nexport AZURE_REQUEST_LOG={}\n",
            shell(&azure.tenant_id),
            shell(&azure.operator_client_id),
            shell(&secret.display().to_string()),
            shell(&azure.proxy_url),
            shell(&format!("localhost,127.0.0.0/8,{}", domains.join(","))),
            shell(&files.ca().display().to_string()),
            shell(&azure.cloud.log_path().display().to_string()),
        ))
    }
}

/// The files a scenario writes into the twin's directory.
#[derive(Debug, Clone)]
pub struct ScenarioFiles {
    pub dir: PathBuf,
}

impl ScenarioFiles {
    pub fn env(&self) -> PathBuf {
        self.dir.join("env")
    }
    pub fn params(&self) -> PathBuf {
        self.dir.join("params.yaml")
    }
    /// The parameters the online and live plans need beyond [`ScenarioFiles::params`].
    pub fn online_params(&self) -> PathBuf {
        self.dir.join("online-params.yaml")
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join(crate::twin::CA_FILE)
    }
    pub fn secrets_dir(&self) -> PathBuf {
        self.dir.join("secrets")
    }
    /// `secrets/<name>`: one secret per file (0600).
    pub fn secret(&self, name: &str) -> PathBuf {
        self.secrets_dir().join(name)
    }
    /// `scenario.json`: clusters, domains, gateways and key services, for `twin status`.
    pub fn summary(&self) -> PathBuf {
        self.dir.join("scenario.json")
    }
}

/// The health of every pod of `vault`: (ordinal, health if it answers).
pub async fn pod_health(vault: &VaultCluster) -> Vec<(u32, Option<Health>)> {
    let mut out = Vec::new();
    for ordinal in 0..vault.plan.replicas {
        let health = match vault.pod_address(ordinal) {
            Some(address) => probe_health(address, false).await,
            None => None,
        };
        out.push((ordinal, health));
    }
    out
}
