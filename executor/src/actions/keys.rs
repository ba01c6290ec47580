//! `keys.disable`: the old Vault's identity loses its access to the old key, per kind of key
//! service. Every removal is found first, made as a journaled effect of its own, and observable:
//! a step left in doubt by a crash is done once nothing grants the access any more.

use planc::model::CompiledTarget;
use planc_schema::actions as inputs;
use planc_schema::plan::TargetKind;

use super::{Live, typed};
use crate::engine::{ActionError, Effects, StepRun};
use crate::keyservice::KeyServiceError;
use crate::secrets::Secret;
use crate::transit::TransitKey;
use crate::{awskms, azure, gcpckms};

/// What a pass over a `keys.disable` step does once it has found what grants the access.
#[derive(Clone, Copy)]
enum Pass<'e> {
    /// Make each removal as a journaled effect of its own.
    Withdraw(&'e Effects),
    /// Only look: a step left in doubt is done once nothing grants the access any more.
    Observe,
}

impl Live {
    /// Withdraw the access `keys.disable` names; returns the summary of what was removed.
    pub(super) async fn withdraw_key_access(
        &self,
        run: &StepRun,
        effects: &Effects,
    ) -> Result<String, ActionError> {
        let summary = self.key_access(run, Pass::Withdraw(effects)).await?;
        Ok(summary.expect("a withdrawal ends with its summary"))
    }

    /// For a step in doubt: its summary when nothing grants the access any more, `None` when
    /// something still does and the step must run again.
    pub(super) async fn key_access_withdrawn(
        &self,
        run: &StepRun,
    ) -> Result<Option<String>, ActionError> {
        self.key_access(run, Pass::Observe).await
    }

    /// Find what grants the access `keys.disable` names; the summary once nothing does, or, when
    /// only observing, `None` while something still does.
    async fn key_access(
        &self,
        run: &StepRun,
        pass: Pass<'_>,
    ) -> Result<Option<String>, ActionError> {
        let input: inputs::KeysDisableInput = typed(run)?;
        let target = self.target(&run.step.on)?;
        match target.kind {
            TargetKind::Transit => {
                let key = TransitKey::from_compiled(target);
                let token = self.transit_token(target)?;
                if key.access_withdrawn(&token).await? {
                    return Ok(Some(transit_summary(&key, false)));
                }
                let Pass::Withdraw(effects) = pass else {
                    return Ok(None);
                };
                effects
                    .perform(
                        &format!(
                            "revoke the seal's token at {} (transit key {})",
                            key.address, key.key_name
                        ),
                        key.revoke_token(&token),
                    )
                    .await?;
                key.prove_withdrawn(&token).await?;
                Ok(Some(transit_summary(&key, true)))
            }
            TargetKind::Azurekeyvault => {
                let (endpoints, credential) = (
                    azure::AzureEndpoints::from_env(),
                    azure::AzureCredential::from_env(),
                );
                let key_vault = azure::KeyVaultTarget::from_compiled(target)?;
                let mut withdrawal = azure::plan_withdrawal(
                    &endpoints,
                    &credential,
                    &key_vault,
                    &input.identity,
                    &input.role,
                )
                .await?;
                let Pass::Withdraw(effects) = pass else {
                    return observed(withdrawal.is_withdrawn(), || withdrawal.finish());
                };
                for removal in withdrawal.removals().to_vec() {
                    effects
                        .perform(&removal.to_string(), async {
                            withdrawal.remove(&removal).await.map_err(ActionError::from)
                        })
                        .await?;
                }
                Ok(Some(withdrawal.finish()?))
            }
            TargetKind::Gcpckms => {
                let (endpoint, credential) = (
                    gcpckms::CloudKmsEndpoint::from_env(),
                    gcpckms::GcpCredential::from_env(),
                );
                let crypto_key = gcpckms::CryptoKeyTarget::from_compiled(target)?;
                let withdrawal =
                    gcpckms::plan_withdrawal(&endpoint, &credential, &crypto_key, &input.identity)
                        .await?;
                let Pass::Withdraw(effects) = pass else {
                    return observed(withdrawal.is_withdrawn(), || Ok(withdrawal.summary()));
                };
                if let Some(effect) = withdrawal.effect() {
                    effects
                        .perform(&effect, async {
                            withdrawal.apply().await.map_err(ActionError::from)
                        })
                        .await?;
                }
                Ok(Some(withdrawal.summary()))
            }
            TargetKind::Awskms => {
                let (endpoint, credentials) = (
                    awskms::KmsEndpoint::from_env(),
                    awskms::AwsCredentials::from_env()?,
                );
                let kms_key = awskms::KmsKeyTarget::from_compiled(target)?;
                let withdrawal =
                    awskms::plan_withdrawal(&endpoint, &credentials, &kms_key, &input.identity)
                        .await?;
                let Pass::Withdraw(effects) = pass else {
                    return observed(withdrawal.is_withdrawn(), || withdrawal.finish());
                };
                for grant in withdrawal.grants() {
                    effects
                        .perform(&withdrawal.revoke_effect(grant), async {
                            withdrawal.revoke(grant).await.map_err(ActionError::from)
                        })
                        .await?;
                }
                Ok(Some(withdrawal.finish()?))
            }
            other => Err(not_a_key_service(other)),
        }
    }

    /// The token a transit seal uses, which is its access to the key.
    pub(super) fn transit_token(&self, target: &CompiledTarget) -> Result<Secret, ActionError> {
        self.secret_attribute(target, "token").ok_or_else(|| {
            ActionError::permanent(format!("the transit target `{}` has no token", target.id))
        })
    }
}

/// What a step in doubt finds: the summary once nothing grants the access (`withdrawn`), `None`
/// while something still does.
fn observed(
    withdrawn: bool,
    summary: impl FnOnce() -> Result<String, KeyServiceError>,
) -> Result<Option<String>, ActionError> {
    Ok(withdrawn.then(summary).transpose()?)
}

/// What a transit withdrawal did (`revoked`), or found done already.
fn transit_summary(key: &TransitKey, revoked: bool) -> String {
    let (address, name) = (&key.address, &key.key_name);
    if revoked {
        format!(
            "revoked the seal's token at {address}: an encrypt with transit key {name} now answers 403"
        )
    } else {
        format!(
            "the seal's token at {address} is revoked already (lookup-self and an encrypt with transit key {name} answer 403): nothing to withdraw"
        )
    }
}

fn not_a_key_service(kind: TargetKind) -> ActionError {
    ActionError::permanent(format!(
        "`keys.disable` withdraws access to a key service, not a {} target",
        kind.name()
    ))
}
