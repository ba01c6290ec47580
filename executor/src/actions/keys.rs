//! `keys.disable`: the old Vault's identity loses its access to the old key, through the
//! [`KeyService`] the target is. Every removal is found first, made as a journaled effect of its
//! own, and observable: a step left in doubt by a crash is done once nothing grants the access
//! any more.

use planc::model::CompiledTarget;
use planc_schema::actions as inputs;
use planc_schema::plan::TargetKind;
use serde_json::json;

use super::{Live, Outputs, typed};
use crate::engine::{ActionError, Effects, StepRun};
use crate::keyservices::{self, KeyService};
use crate::secrets::Secret;

use super::live_action_fns;

live_action_fns!(
    /// `keys.disable`.
    Disable: apply disable, observe disable_done
);

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
        let service = self.key_service(&run.step.on)?;
        let mut withdrawal = service
            .plan_withdrawal(&input.identity, &input.role)
            .await?;
        let Pass::Withdraw(effects) = pass else {
            return Ok(match withdrawal.is_withdrawn() {
                true => Some(withdrawal.finish().await?),
                false => None,
            });
        };
        for (index, removal) in withdrawal.removals().into_iter().enumerate() {
            effects.perform(&removal, withdrawal.remove(index)).await?;
        }
        Ok(Some(withdrawal.finish().await?))
    }

    /// The key service a target is: the operator's credentials for the clouds, the seal's token
    /// for transit.
    pub(super) fn key_service(&self, id: &str) -> Result<Box<dyn KeyService>, ActionError> {
        let target = self.target(id)?;
        let token = match target.kind {
            TargetKind::Transit => Some(self.transit_token(target)?),
            _ => None,
        };
        keyservices::for_target(target, token)
    }

    /// The token a transit seal uses, which is its access to the key.
    pub(super) fn transit_token(&self, target: &CompiledTarget) -> Result<Secret, ActionError> {
        self.secret_attribute(target, "token").ok_or_else(|| {
            ActionError::permanent(format!("the transit target `{}` has no token", target.id))
        })
    }
}

/// `keys.disable`.
pub(super) async fn disable(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let mut outputs = Outputs::new();
    let summary = live.withdraw_key_access(run, effects).await?;
    outputs.insert("summary", json!(summary));
    Ok(outputs)
}

/// For a `keys.disable` in doubt: done once nothing grants the access any more.
pub(super) async fn disable_done(
    live: &Live,
    run: &StepRun,
) -> Result<Option<Outputs>, ActionError> {
    Ok(live
        .key_access_withdrawn(run)
        .await?
        .map(|summary| Outputs::from([("summary", json!(summary))])))
}
