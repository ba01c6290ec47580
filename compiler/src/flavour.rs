//! Install flavours: the object names, container, labels, environment-variable prefix and data
//! path a Vault target's Helm chart gives its install, filled into the target once at compile
//! time (an attribute the plan sets always wins).

use indexmap::IndexMap;

use crate::expr::Resolved;

/// The charts planc knows the defaults of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// HashiCorp's `vault-helm` chart (the default).
    VaultHelm,
    /// OpenBao's `openbao-helm` chart.
    OpenbaoHelm,
}

impl Flavour {
    pub const DEFAULT: Flavour = Flavour::VaultHelm;
    pub const ALL: [Flavour; 2] = [Flavour::VaultHelm, Flavour::OpenbaoHelm];

    pub fn parse(name: &str) -> Option<Flavour> {
        Flavour::ALL.into_iter().find(|f| f.name() == name)
    }

    /// As a plan writes it.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::VaultHelm => "vault-helm",
            Flavour::OpenbaoHelm => "openbao-helm",
        }
    }

    /// The chart's name: its default release name, the pods' `app.kubernetes.io/name`, the
    /// container, and the prefix of the labels the server's Kubernetes service registration
    /// sets (`vault-active`, `openbao-active`, ...).
    fn chart(self) -> &'static str {
        match self {
            Flavour::VaultHelm => "vault",
            Flavour::OpenbaoHelm => "openbao",
        }
    }

    /// The prefix of the server's own environment variables (`VAULT_ADDR`, `BAO_ADDR`,
    /// `BAO_SEAL_TYPE`, ...).
    fn env_prefix(self) -> &'static str {
        match self {
            Flavour::VaultHelm => "VAULT_",
            Flavour::OpenbaoHelm => "BAO_",
        }
    }

    /// The attributes this flavour gives a vault target whose objects are named after
    /// `release` (the chart's full name: every object's name or prefix).
    fn attributes(self, release: &str) -> Vec<(&'static str, String)> {
        let chart = self.chart();
        vec![
            ("statefulset", release.to_string()),
            ("container", chart.to_string()),
            ("configmap", format!("{release}-config")),
            ("config_key", "extraconfig-from-values.hcl".to_string()),
            ("ingress", release.to_string()),
            ("service", release.to_string()),
            ("active_service", format!("{release}-active")),
            ("standby_service", format!("{release}-standby")),
            ("internal_service", format!("{release}-internal")),
            ("selector", format!("app.kubernetes.io/name={chart}")),
            ("status_labels", chart.to_string()),
            ("env_prefix", self.env_prefix().to_string()),
            ("data_path", format!("/{chart}/data")),
        ]
    }
}

/// Fill a vault target's flavour defaults into `attributes`, leaving every attribute the plan
/// set. An unknown flavour fills nothing (lowering reports it); `release` left out or empty is
/// the chart's name.
pub fn fill_vault_defaults(attributes: &mut IndexMap<String, Resolved>) {
    let named = attributes
        .get("flavour")
        .and_then(Resolved::as_str)
        .map(str::to_owned);
    let flavour = match named.as_deref() {
        None => Flavour::DEFAULT,
        Some(name) => match Flavour::parse(name) {
            Some(flavour) => flavour,
            None => return,
        },
    };
    attributes.insert("flavour".into(), Resolved::Str(flavour.name().into()));
    let release = match attributes.get("release").and_then(Resolved::as_str) {
        Some(release) if !release.is_empty() => release.to_string(),
        _ => flavour.chart().to_string(),
    };
    attributes.insert("release".into(), Resolved::Str(release.clone()));
    for (name, value) in flavour.attributes(&release) {
        attributes
            .entry(name.to_string())
            .or_insert(Resolved::Str(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(given: &[(&str, &str)]) -> IndexMap<String, Resolved> {
        let mut attributes: IndexMap<String, Resolved> = given
            .iter()
            .map(|(k, v)| (k.to_string(), Resolved::Str(v.to_string())))
            .collect();
        fill_vault_defaults(&mut attributes);
        attributes
    }

    fn text<'a>(attributes: &'a IndexMap<String, Resolved>, name: &str) -> &'a str {
        attributes
            .get(name)
            .and_then(Resolved::as_str)
            .unwrap_or("")
    }

    #[test]
    fn the_default_flavour_is_the_vault_chart() {
        let attributes = filled(&[]);
        assert_eq!(text(&attributes, "flavour"), "vault-helm");
        assert_eq!(text(&attributes, "statefulset"), "vault");
        assert_eq!(text(&attributes, "active_service"), "vault-active");
        assert_eq!(text(&attributes, "status_labels"), "vault");
        assert_eq!(text(&attributes, "env_prefix"), "VAULT_");
        assert_eq!(text(&attributes, "data_path"), "/vault/data");
    }

    #[test]
    fn the_openbao_chart_names_everything_after_openbao() {
        let attributes = filled(&[("flavour", "openbao-helm")]);
        assert_eq!(text(&attributes, "statefulset"), "openbao");
        assert_eq!(text(&attributes, "container"), "openbao");
        assert_eq!(text(&attributes, "configmap"), "openbao-config");
        assert_eq!(text(&attributes, "internal_service"), "openbao-internal");
        assert_eq!(
            text(&attributes, "selector"),
            "app.kubernetes.io/name=openbao"
        );
        assert_eq!(text(&attributes, "status_labels"), "openbao");
        assert_eq!(text(&attributes, "env_prefix"), "BAO_");
        assert_eq!(text(&attributes, "data_path"), "/openbao/data");
    }

    #[test]
    fn a_release_renames_the_objects_and_explicit_names_win() {
        let attributes = filled(&[
            ("flavour", "openbao-helm"),
            ("release", "secrets"),
            ("ingress", "public"),
        ]);
        assert_eq!(text(&attributes, "statefulset"), "secrets");
        assert_eq!(text(&attributes, "configmap"), "secrets-config");
        assert_eq!(text(&attributes, "active_service"), "secrets-active");
        assert_eq!(text(&attributes, "ingress"), "public");
        assert_eq!(text(&attributes, "container"), "openbao");
        let empty_release = filled(&[("release", "")]);
        assert_eq!(text(&empty_release, "statefulset"), "vault");
    }

    #[test]
    fn an_unknown_flavour_fills_nothing() {
        let attributes = filled(&[("flavour", "vault-operator")]);
        assert_eq!(text(&attributes, "statefulset"), "");
    }
}
