//! The Azure side of `vault-pair-azure`: the tenant the emulator starts with (a key vault and an
//! unseal key per cluster, the pods' identities and their access, the operator planx signs in
//! as), the proxy that is the only way to it, and what the scenario's files say about it.
//!
//! Access, as a platform team would set it up for the move:
//! - `kv-vault-old` uses Azure RBAC: OLD's identity holds "Key Vault Crypto Service Encryption
//!   User" on the vault, NEW's holds it on the key `vault-unseal-old` (so that the restored data,
//!   wrapped by the old key, unseals in NEW);
//! - `kv-vault-new` uses access policies: NEW's identity has get, wrapKey and unwrapKey;
//! - the operator (`planx-operator`, a service principal with a client secret) is Owner and Key
//!   Vault Reader on the subscription, and may `get` keys in `kv-vault-new`.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::azure::state::{
    AccessPolicy, ClientSecret, FederatedCredential, ROLE_CRYPTO_SERVICE_ENCRYPTION_USER,
    ROLE_KEY_VAULT_READER, ROLE_OWNER, Tenant,
};
use crate::azure::{AzureCloud, TOKEN_EXCHANGE_AUDIENCE};
use crate::node::Shared;
use crate::scenario::{AzureSeal, ClusterPlan, IdentityForm, NAMESPACE, RELEASE};
use crate::twin::Twin;

/// The port of the Azure proxy on its own loopback address.
pub const PROXY_PORT: u16 = 3128;
/// Role assignments per ARM page: small, so that planx follows `nextLink`.
const PAGE_SIZE: usize = 2;

/// The emulated tenant of a running scenario, and who signs in to it.
#[derive(Debug, Clone)]
pub struct ScenarioAzure {
    pub cloud: Arc<AzureCloud>,
    /// `http://ip:port` of the proxy.
    pub proxy_url: String,
    /// The CA the proxy's certificates chain to (the twin's).
    pub ca_pem: String,
    pub tenant_id: String,
    pub subscription: String,
    /// The service principal planx signs in as.
    pub operator_client_id: String,
    pub operator_secret: String,
    /// Per cluster: (name, the identity its pods sign in as).
    pub seal_identities: Vec<(String, SealIdentity)>,
}

/// The identity one cluster's Vault pods sign in as.
#[derive(Debug, Clone)]
pub struct SealIdentity {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub form: IdentityForm,
}

fn secret() -> String {
    format!(
        "tw~{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The tenant, the proxy on its loopback address, and the emulator behind it.
pub fn start_azure(
    twin: &Twin,
    shared: &Arc<Shared>,
    clusters: &[ClusterPlan],
) -> Result<ScenarioAzure, String> {
    let mut tenant = Tenant::new(PAGE_SIZE);
    let subscription_scope = tenant.subscription_id();
    let operator_client_id = tenant.add_application("planx-operator");
    let operator_secret = secret();
    let operator = tenant
        .application_mut(&operator_client_id)
        .ok_or("the operator application vanished")?;
    operator.secrets.push(ClientSecret {
        value: operator_secret.clone(),
        expires_at: None,
    });
    let operator_object = operator.object_id.clone();
    tenant.assign(&operator_object, ROLE_OWNER, &subscription_scope);
    tenant.assign(&operator_object, ROLE_KEY_VAULT_READER, &subscription_scope);

    let mut seal_identities = Vec::new();
    for (index, plan) in clusters.iter().enumerate() {
        // The first cluster's vault uses RBAC, the others access policies.
        let rbac = index == 0;
        tenant.add_vault(
            &plan.key_vault(),
            &plan.resource_group(),
            rbac,
            &plan.key_name,
        )?;
        let client_id = tenant.add_application(&format!("vault-{}-seal", plan.name));
        let application = tenant
            .application_mut(&client_id)
            .ok_or("the seal application vanished")?;
        let client_secret = match plan.identity {
            IdentityForm::ServicePrincipal => {
                let value = secret();
                application.secrets.push(ClientSecret {
                    value: value.clone(),
                    expires_at: None,
                });
                Some(value)
            }
            IdentityForm::WorkloadIdentity => {
                application.federated.push(FederatedCredential {
                    issuer: crate::identity::cluster_issuer(&plan.name),
                    subject: format!("system:serviceaccount:{NAMESPACE}:{RELEASE}"),
                    audience: TOKEN_EXCHANGE_AUDIENCE.to_string(),
                });
                None
            }
        };
        seal_identities.push((
            plan.name.clone(),
            SealIdentity {
                client_id,
                client_secret,
                form: plan.identity,
            },
        ));
    }
    // Each identity may use its own cluster's key; every later cluster's identity may also use
    // the first cluster's key (the move restores data wrapped by it).
    let first = clusters.first().ok_or("a scenario needs a cluster")?;
    for (index, plan) in clusters.iter().enumerate() {
        let object_id = tenant
            .application(&seal_identities[index].1.client_id)
            .map(|a| a.object_id.clone())
            .ok_or("a seal application vanished")?;
        let vault = tenant
            .vault(&plan.key_vault())
            .cloned()
            .ok_or("a vault vanished")?;
        let vault_id = tenant.vault_id(&vault);
        if vault.rbac {
            tenant.assign(&object_id, ROLE_CRYPTO_SERVICE_ENCRYPTION_USER, &vault_id);
        } else if let Some(vault) = tenant.vault_mut(&plan.key_vault()) {
            vault.access_policies.push(AccessPolicy {
                object_id: object_id.clone(),
                keys: ["get", "wrapKey", "unwrapKey"].map(str::to_string).to_vec(),
            });
            vault.access_policies.push(AccessPolicy {
                object_id: operator_object.clone(),
                keys: vec!["get".to_string()],
            });
        }
        if index > 0 {
            let first_vault = tenant
                .vault(&first.key_vault())
                .cloned()
                .ok_or("a vault vanished")?;
            let key_scope = format!("{}/keys/{}", tenant.vault_id(&first_vault), first.key_name);
            tenant.assign(&object_id, ROLE_CRYPTO_SERVICE_ENCRYPTION_USER, &key_scope);
        }
    }

    let tenant_id = tenant.tenant_id.clone();
    let subscription = tenant.subscription.clone();
    let cloud = Arc::new(
        AzureCloud::new(tenant, shared.signer.clone(), &twin.dir().join("azure"))
            .map_err(|e| format!("cannot start the Azure emulator: {e}"))?,
    );
    let address = SocketAddr::from((shared.slot.cloud_proxy_ip(), PROXY_PORT));
    let listener = std::net::TcpListener::bind(address)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|e| format!("cannot listen on {address} for the Azure proxy: {e}"))?;
    crate::azure::spawn_proxy(
        twin.runtime(),
        listener,
        cloud.clone(),
        shared.authority.clone(),
    )?;
    Ok(ScenarioAzure {
        cloud,
        proxy_url: format!("http://{address}"),
        ca_pem: shared.authority.ca_pem().to_string(),
        tenant_id,
        subscription,
        operator_client_id,
        operator_secret,
        seal_identities,
    })
}

impl ScenarioAzure {
    /// The identity cluster `name`'s pods sign in as.
    pub fn identity_of(&self, name: &str) -> Option<&SealIdentity> {
        self.seal_identities
            .iter()
            .find(|(cluster, _)| cluster == name)
            .map(|(_, identity)| identity)
    }

    /// The seal of cluster `plan`.
    pub fn seal_of(&self, plan: &ClusterPlan) -> Result<AzureSeal, String> {
        let identity = self
            .identity_of(&plan.name)
            .ok_or_else(|| format!("no Azure identity for cluster {}", plan.name))?;
        Ok(AzureSeal {
            tenant_id: self.tenant_id.clone(),
            vault_name: plan.key_vault(),
            key_name: plan.key_name.clone(),
            client_id: identity.client_id.clone(),
            client_secret: identity.client_secret.clone(),
            form: identity.form,
            proxy_url: self.proxy_url.clone(),
            ca_pem: self.ca_pem.clone(),
        })
    }
}
