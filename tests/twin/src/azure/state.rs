//! The emulated Azure tenant: applications (service principals with client secrets and federated
//! credentials), key vaults (RBAC or access policies) with RSA keys and their versions, and role
//! assignments; who may do what, as Entra ID, ARM and Key Vault decide it; and the changes tests
//! make to inject faults (revoke a role, disable or expire a key, expire a secret).

use rsa::RsaPrivateKey;

use crate::identity::unix_now;

/// "Key Vault Crypto Service Encryption User": get, wrapKey, unwrapKey on keys.
pub const ROLE_CRYPTO_SERVICE_ENCRYPTION_USER: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
/// "Key Vault Crypto User": every key operation.
pub const ROLE_CRYPTO_USER: &str = "12338af0-0e69-4776-bea7-57ae8d297424";
/// "Key Vault Reader": key metadata.
pub const ROLE_KEY_VAULT_READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";
/// "Key Vault Administrator": every data action.
pub const ROLE_KEY_VAULT_ADMINISTRATOR: &str = "00482a5a-887f-4fb3-b363-3b7fe8e74483";
/// "Owner": every management action (no data action).
pub const ROLE_OWNER: &str = "8e3af657-a8ff-443b-a75c-2fe8c4bcb635";
/// "Reader": management reads.
pub const ROLE_READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

/// The built-in roles the emulator knows: (GUID, name).
pub const ROLES: &[(&str, &str)] = &[
    (
        ROLE_CRYPTO_SERVICE_ENCRYPTION_USER,
        "Key Vault Crypto Service Encryption User",
    ),
    (ROLE_CRYPTO_USER, "Key Vault Crypto User"),
    (ROLE_KEY_VAULT_READER, "Key Vault Reader"),
    (ROLE_KEY_VAULT_ADMINISTRATOR, "Key Vault Administrator"),
    (ROLE_OWNER, "Owner"),
    (ROLE_READER, "Reader"),
];

/// A key operation of the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOperation {
    Get,
    WrapKey,
    UnwrapKey,
}

impl KeyOperation {
    /// The permission's name in an access policy.
    pub fn permission(self) -> &'static str {
        match self {
            KeyOperation::Get => "get",
            KeyOperation::WrapKey => "wrapKey",
            KeyOperation::UnwrapKey => "unwrapKey",
        }
    }
}

/// A management action of ARM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagementAction {
    Read,
    Write,
}

/// An application registration with its service principal.
#[derive(Debug, Clone)]
pub struct Application {
    pub display_name: String,
    /// The application (client) id.
    pub client_id: String,
    /// The service principal's object id.
    pub object_id: String,
    pub secrets: Vec<ClientSecret>,
    pub federated: Vec<FederatedCredential>,
}

#[derive(Debug, Clone)]
pub struct ClientSecret {
    pub value: String,
    /// Seconds since the epoch; `None` never expires.
    pub expires_at: Option<u64>,
}

/// Trust in a Kubernetes service account's tokens (workload identity).
#[derive(Debug, Clone)]
pub struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    pub audience: String,
}

#[derive(Debug, Clone)]
pub struct KeyVault {
    pub name: String,
    pub resource_group: String,
    /// Azure RBAC decides data access; otherwise access policies do.
    pub rbac: bool,
    pub access_policies: Vec<AccessPolicy>,
    pub keys: Vec<Key>,
}

#[derive(Debug, Clone)]
pub struct AccessPolicy {
    pub object_id: String,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    /// Oldest first; the last is the current version.
    pub versions: Vec<KeyVersion>,
}

#[derive(Debug, Clone)]
pub struct KeyVersion {
    pub version: String,
    pub private: RsaPrivateKey,
    pub enabled: bool,
    /// Seconds since the epoch; `None` never expires.
    pub expires_at: Option<u64>,
    pub key_ops: Vec<String>,
    pub created: u64,
}

impl KeyVersion {
    /// Why the version cannot be used now, if it cannot.
    pub fn unusable(&self) -> Option<&'static str> {
        if !self.enabled {
            Some("Operation is not allowed on a disabled key.")
        } else if self.expires_at.is_some_and(|at| at <= unix_now()) {
            Some("Operation is not allowed on an expired key.")
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct RoleAssignment {
    /// The assignment's GUID (its name).
    pub name: String,
    pub scope: String,
    pub principal_id: String,
    pub role_definition: String,
}

impl RoleAssignment {
    /// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`.
    pub fn id(&self) -> String {
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{}",
            self.scope, self.name
        )
    }
}

/// One tenant, one subscription.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub tenant_id: String,
    pub subscription: String,
    pub applications: Vec<Application>,
    pub vaults: Vec<KeyVault>,
    pub role_assignments: Vec<RoleAssignment>,
    /// Role assignments per ARM page (small, so that paging is exercised).
    pub page_size: usize,
}

/// A fresh GUID.
pub fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A key version id as Key Vault writes them (32 hex digits).
fn key_version_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A 2048-bit RSA key, as `az keyvault key create --kty RSA` makes.
pub fn generate_rsa_key() -> Result<RsaPrivateKey, String> {
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|e| format!("cannot generate an RSA key: {e}"))
}

/// `scope` is `target` or one of its ancestors (ARM scopes are paths, compared without case).
pub fn scope_covers(scope: &str, target: &str) -> bool {
    let scope = scope.trim_end_matches('/').to_ascii_lowercase();
    let target = target.trim_end_matches('/').to_ascii_lowercase();
    target == scope || target.starts_with(&format!("{scope}/"))
}

fn role_allows_key(role: &str, operation: KeyOperation) -> bool {
    match role {
        ROLE_CRYPTO_SERVICE_ENCRYPTION_USER | ROLE_CRYPTO_USER | ROLE_KEY_VAULT_ADMINISTRATOR => {
            true
        }
        ROLE_KEY_VAULT_READER => operation == KeyOperation::Get,
        _ => false,
    }
}

fn role_allows_management(role: &str, action: ManagementAction) -> bool {
    match role {
        ROLE_OWNER => true,
        ROLE_READER => action == ManagementAction::Read,
        _ => false,
    }
}

impl Tenant {
    pub fn new(page_size: usize) -> Tenant {
        Tenant {
            tenant_id: guid(),
            subscription: guid(),
            applications: Vec::new(),
            vaults: Vec::new(),
            role_assignments: Vec::new(),
            page_size: page_size.max(1),
        }
    }

    /// `/subscriptions/{id}`.
    pub fn subscription_id(&self) -> String {
        format!("/subscriptions/{}", self.subscription)
    }

    /// The ARM id of the vault named `name`.
    pub fn vault_id(&self, vault: &KeyVault) -> String {
        format!(
            "{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}",
            self.subscription_id(),
            vault.resource_group,
            vault.name
        )
    }

    /// Registers an application with a service principal; its client id.
    pub fn add_application(&mut self, display_name: &str) -> String {
        let client_id = guid();
        self.applications.push(Application {
            display_name: display_name.to_string(),
            client_id: client_id.clone(),
            object_id: guid(),
            secrets: Vec::new(),
            federated: Vec::new(),
        });
        client_id
    }

    pub fn application(&self, client_id: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|app| app.client_id.eq_ignore_ascii_case(client_id))
    }

    pub fn application_mut(&mut self, client_id: &str) -> Option<&mut Application> {
        self.applications
            .iter_mut()
            .find(|app| app.client_id.eq_ignore_ascii_case(client_id))
    }

    pub fn application_by_object(&self, object_id: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|app| app.object_id.eq_ignore_ascii_case(object_id))
    }

    pub fn vault(&self, name: &str) -> Option<&KeyVault> {
        self.vaults
            .iter()
            .find(|vault| vault.name.eq_ignore_ascii_case(name))
    }

    pub fn vault_mut(&mut self, name: &str) -> Option<&mut KeyVault> {
        self.vaults
            .iter_mut()
            .find(|vault| vault.name.eq_ignore_ascii_case(name))
    }

    /// Creates a vault with one key `key_name` (one version).
    pub fn add_vault(
        &mut self,
        name: &str,
        resource_group: &str,
        rbac: bool,
        key_name: &str,
    ) -> Result<(), String> {
        let key = Key {
            name: key_name.to_string(),
            versions: vec![new_version()?],
        };
        self.vaults.push(KeyVault {
            name: name.to_string(),
            resource_group: resource_group.to_string(),
            rbac,
            access_policies: Vec::new(),
            keys: vec![key],
        });
        Ok(())
    }

    /// Assigns `role` to the principal with `object_id` at `scope`; the assignment's id.
    pub fn assign(&mut self, object_id: &str, role: &str, scope: &str) -> String {
        let assignment = RoleAssignment {
            name: guid(),
            scope: scope.to_string(),
            principal_id: object_id.to_string(),
            role_definition: role.to_string(),
        };
        let id = assignment.id();
        self.role_assignments.push(assignment);
        id
    }

    /// Whether the principal may do `operation` on `key` of `vault`.
    pub fn may_use_key(
        &self,
        object_id: &str,
        vault: &KeyVault,
        key: &str,
        operation: KeyOperation,
    ) -> bool {
        if vault.rbac {
            let key_id = format!("{}/keys/{key}", self.vault_id(vault));
            self.role_assignments.iter().any(|assignment| {
                assignment.principal_id.eq_ignore_ascii_case(object_id)
                    && role_allows_key(&assignment.role_definition, operation)
                    && scope_covers(&assignment.scope, &key_id)
            })
        } else {
            vault.access_policies.iter().any(|policy| {
                policy.object_id.eq_ignore_ascii_case(object_id)
                    && policy.keys.iter().any(|held| {
                        held.eq_ignore_ascii_case(operation.permission())
                            || held.eq_ignore_ascii_case("all")
                    })
            })
        }
    }

    /// Whether the principal may do `action` on the ARM resource `resource`.
    pub fn may_manage(&self, object_id: &str, resource: &str, action: ManagementAction) -> bool {
        self.role_assignments.iter().any(|assignment| {
            assignment.principal_id.eq_ignore_ascii_case(object_id)
                && role_allows_management(&assignment.role_definition, action)
                && scope_covers(&assignment.scope, resource)
        })
    }
}

/// A new enabled key version allowing every RSA operation.
pub fn new_version() -> Result<KeyVersion, String> {
    Ok(KeyVersion {
        version: key_version_id(),
        private: generate_rsa_key()?,
        enabled: true,
        expires_at: None,
        key_ops: [
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
        ]
        .map(str::to_string)
        .to_vec(),
        created: unix_now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_themselves_and_what_lies_below() {
        let vault = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";
        assert!(scope_covers(vault, &format!("{vault}/keys/k")));
        assert!(scope_covers(
            "/subscriptions/S/",
            &format!("{vault}/keys/k")
        ));
        assert!(scope_covers(vault, vault));
        assert!(!scope_covers(&format!("{vault}2"), vault));
        assert!(!scope_covers(&format!("{vault}/keys/k"), vault));
    }
}
