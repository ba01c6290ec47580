//! What the recordings of `tests/azure/` and `tests/kms/` hold, for the test files that serve
//! them: their folders, the names and ids in them, the endpoints, environment and plan targets
//! that address them, and the secrets planted in them, which nothing planx shows may contain.

#![allow(
    dead_code,
    reason = "each test file uses the part for the recordings it serves"
)]

use super::{Fixtures, Replay};

/// The recordings in `tests/azure/`, shaped after Microsoft's documentation.
pub const AZURE: Fixtures = Fixtures {
    folder: "azure",
    documentation: &["https://learn.microsoft.com/"],
};

/// The recordings in `tests/kms/`, shaped after AWS's and Google's documentation.
pub const KMS: Fixtures = Fixtures {
    folder: "kms",
    documentation: &["https://docs.aws.amazon.com/", "https://cloud.google.com/"],
};

/// A plan `name` with `targets` (the YAML under `targets:`) and, for each `(id, on, identity)`,
/// a step `id` that `uses` the action on the target `on` with that `identity:`.
pub fn plan_text(name: &str, targets: &str, uses: &str, steps: &[(&str, &str, &str)]) -> String {
    let mut text = format!("version: 1\nname: {name}\ntargets:\n{targets}steps:\n");
    for (id, on, identity) in steps {
        text.push_str(&format!(
            "  - id: {id}\n    uses: {uses}\n    on: {on}\n    with: {{identity: \"{identity}\"}}\n"
        ));
    }
    text
}

/// Azure Key Vault: the key `vault-unseal-new` in the vault `kv-new` of resource group
/// `rg-vault-new`, and the managed identity the Vault pods use.
pub mod azure {
    use planx::keyservices::azure::{AzureEndpoints, KeyVaultTarget};

    use super::Replay;

    pub const TENANT: &str = "8d3c5a1e-0f2b-4c6d-9e7f-1a2b3c4d5e6f";
    pub const SUBSCRIPTION: &str = "3f2a1b0c-5d4e-4f6a-8b7c-9d0e1f2a3b4c";
    pub const VAULT_ID: &str = "/subscriptions/3f2a1b0c-5d4e-4f6a-8b7c-9d0e1f2a3b4c/resourceGroups/rg-vault-new/providers/Microsoft.KeyVault/vaults/kv-new";
    /// The client id of the managed identity the Vault pods use, and its object id in Graph.
    pub const IDENTITY: &str = "11111111-2222-3333-4444-555555555555";
    pub const OBJECT_ID: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    /// The application the operator runs planx as.
    pub const OPERATOR_CLIENT_ID: &str = "c0ffee00-1111-4222-8333-444455556666";
    pub const ROLE: &str = "Key Vault Crypto Service Encryption User";

    pub const CLIENT_SECRET: &str = "planted~client~secret.Q8r";
    pub const ARM_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.planted-arm-token.sig";
    pub const GRAPH_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.planted-graph-token.sig";
    pub const KEY_VAULT_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.planted-keyvault-token.sig";
    /// What a workload identity's token file holds.
    pub const FEDERATED_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.planted-federated-token.sig";
    pub const PLANTED: [&str; 5] = [
        CLIENT_SECRET,
        ARM_TOKEN,
        GRAPH_TOKEN,
        KEY_VAULT_TOKEN,
        FEDERATED_TOKEN,
    ];

    /// Every Azure endpoint on the replay server.
    pub fn endpoints(replay: &Replay) -> AzureEndpoints {
        AzureEndpoints {
            authority: format!("{}/login", replay.base),
            arm: format!("{}/arm", replay.base),
            graph: format!("{}/graph", replay.base),
            key_vault_url_template: format!("{}/kv/{{vault}}", replay.base),
        }
    }

    /// The environment of a planx that reaches [`endpoints`] with the client secret.
    pub fn environment(replay: &Replay) -> Vec<(&'static str, String)> {
        let endpoints = endpoints(replay);
        vec![
            ("AZURE_AUTHORITY_HOST", endpoints.authority),
            ("PLANX_AZURE_ARM_URL", endpoints.arm),
            ("PLANX_AZURE_GRAPH_URL", endpoints.graph),
            ("PLANX_AZURE_KEYVAULT_URL", endpoints.key_vault_url_template),
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_CLIENT_ID", OPERATOR_CLIENT_ID.into()),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET.into()),
        ]
    }

    pub fn target() -> KeyVaultTarget {
        KeyVaultTarget {
            tenant_id: TENANT.into(),
            vault_name: "kv-new".into(),
            key_name: "vault-unseal-new".into(),
            subscription: Some(SUBSCRIPTION.into()),
            resource_group: Some("rg-vault-new".into()),
        }
    }

    /// [`target`] as the plan target `id`, under `targets:`.
    pub fn target_yaml(id: &str) -> String {
        format!(
            "  {id}:
    kind: azurekeyvault
    tenant_id: {TENANT}
    vault_name: kv-new
    key_name: vault-unseal-new
    subscription: {SUBSCRIPTION}
    resource_group: rg-vault-new
"
        )
    }
}

/// AWS KMS: the key `alias/vault-seal-new` in `us-east-1` and the IAM role the Vault pods use;
/// Cloud KMS: the crypto key `vault-seal-new` and the service account the Vault pods use.
pub mod kms {
    use planx::keyservices::awskms::{AwsCredentials, KmsEndpoint, KmsKeyTarget};
    use planx::keyservices::gcpckms::{CloudKmsEndpoint, CryptoKeyTarget};
    use planx::secrets::Secret;

    use super::Replay;

    pub const REGION: &str = "us-east-1";
    /// The key as the seal names it, and as DescribeKey resolves it.
    pub const KEY_ALIAS: &str = "alias/vault-seal-new";
    pub const KEY_ARN: &str =
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    /// The IAM role the Vault pods use.
    pub const ROLE: &str = "arn:aws:iam::111122223333:role/vault-seal";
    pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    pub const SECRET_ACCESS_KEY: &str = "planted/aws+Secret+wJalrXUtnFEMIK7MDENG";
    pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEplanted-session-token/A==";

    pub const GCP_KEY: &str =
        "projects/vault-prod/locations/europe-west1/keyRings/vault/cryptoKeys/vault-seal-new";
    /// The service account the Vault pods use.
    pub const SERVICE_ACCOUNT: &str = "vault-seal@vault-prod.iam.gserviceaccount.com";
    pub const GCP_TOKEN: &str = "ya29.planted-gcp-access-token";

    pub const PLANTED: [&str; 3] = [SECRET_ACCESS_KEY, SESSION_TOKEN, GCP_TOKEN];

    /// The awskms target `aws_keys` and the gcpckms target `gcp_keys`, under `targets:`.
    pub const TARGETS_YAML: &str = "  aws_keys:
    kind: awskms
    region: us-east-1
    kms_key_id: alias/vault-seal-new
  gcp_keys:
    kind: gcpckms
    project: vault-prod
    region: europe-west1
    key_ring: vault
    crypto_key: vault-seal-new
";

    pub fn aws_credentials() -> AwsCredentials {
        AwsCredentials {
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: Secret::new(SECRET_ACCESS_KEY),
            session_token: Some(Secret::new(SESSION_TOKEN)),
        }
    }

    pub fn aws_target() -> KmsKeyTarget {
        KmsKeyTarget {
            region: REGION.into(),
            kms_key_id: KEY_ALIAS.into(),
        }
    }

    pub fn aws_endpoint(replay: &Replay) -> KmsEndpoint {
        KmsEndpoint {
            url_template: replay.base.clone(),
        }
    }

    pub fn gcp_target() -> CryptoKeyTarget {
        CryptoKeyTarget {
            project: "vault-prod".into(),
            region: "europe-west1".into(),
            key_ring: "vault".into(),
            crypto_key: "vault-seal-new".into(),
        }
    }

    pub fn gcp_endpoint(replay: &Replay) -> CloudKmsEndpoint {
        CloudKmsEndpoint {
            url: format!("{}/v1", replay.base),
        }
    }

    /// The environment of a planx that reaches both services on the replay server with the
    /// operator's credentials and token.
    pub fn environment(replay: &Replay) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN.into()),
            ("PLANX_AWS_KMS_URL", aws_endpoint(replay).url_template),
            ("GOOGLE_OAUTH_ACCESS_TOKEN", GCP_TOKEN.into()),
            ("PLANX_GCP_KMS_URL", gcp_endpoint(replay).url),
        ]
    }
}

/// The recordings in `tests/vault-api/`, shaped after HashiCorp Vault's API documentation.
pub const VAULT_API: Fixtures = Fixtures {
    folder: "vault-api",
    documentation: &["https://developer.hashicorp.com/vault/api-docs/"],
};
