//! The Helm charts a scenario installs Vault with: HashiCorp's `vault-helm` (Vault's names,
//! `vault server`) and OpenBao's `openbao-helm` (`openbao` names, `BAO_*` variables, `bao
//! server`, `/openbao/...` paths), as their server StatefulSets render them.

/// Which chart a scenario's clusters are installed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chart {
    /// `vault-helm` 0.34: release `vault` in namespace `vault`.
    #[default]
    VaultHelm,
    /// `openbao-helm` 0.29: release `openbao` in namespace `openbao`.
    OpenbaoHelm,
}

impl Chart {
    /// The flavour a plan's vault target names it by.
    pub fn flavour(self) -> &'static str {
        match self {
            Chart::VaultHelm => "vault-helm",
            Chart::OpenbaoHelm => "openbao-helm",
        }
    }

    /// The chart's name: the release, the container, `app.kubernetes.io/name`.
    pub fn name(self) -> &'static str {
        match self {
            Chart::VaultHelm => "vault",
            Chart::OpenbaoHelm => "openbao",
        }
    }

    /// The release name every object is named after.
    pub fn release(self) -> &'static str {
        self.name()
    }

    /// The namespace the scenario installs into.
    pub fn namespace(self) -> &'static str {
        self.name()
    }

    /// The `helm.sh/chart` label.
    pub fn chart_label(self) -> &'static str {
        match self {
            Chart::VaultHelm => "vault-0.34.0",
            Chart::OpenbaoHelm => "openbao-0.29.2",
        }
    }

    /// The server binary the start script runs (and the readiness probe calls).
    pub fn binary(self) -> &'static str {
        match self {
            Chart::VaultHelm => "vault",
            Chart::OpenbaoHelm => "bao",
        }
    }

    /// The prefix of the server's environment variables.
    pub fn env_prefix(self) -> &'static str {
        match self {
            Chart::VaultHelm => "VAULT_",
            Chart::OpenbaoHelm => "BAO_",
        }
    }

    /// The directory the chart mounts the configuration, data and user ConfigMaps under.
    pub fn root(self) -> &'static str {
        match self {
            Chart::VaultHelm => "/vault",
            Chart::OpenbaoHelm => "/openbao",
        }
    }

    /// The start script of the chart's server StatefulSet (`args[0]`).
    pub fn start_script(self) -> String {
        let root = self.root();
        let binary = self.binary();
        let mut script =
            format!("cp {root}/config/extraconfig-from-values.hcl /tmp/storageconfig.hcl;\n");
        for placeholder in [
            "HOST_IP",
            "POD_IP",
            "HOSTNAME",
            "API_ADDR",
            "TRANSIT_ADDR",
            "RAFT_ADDR",
        ] {
            script.push_str(&format!(
                "[ -n \"${{{placeholder}}}\" ] && sed -Ei \"s|{placeholder}|${{{placeholder}?}}|g\" /tmp/storageconfig.hcl;\n"
            ));
        }
        script.push_str(&format!(
            "/usr/local/bin/docker-entrypoint.sh {binary} server -config=/tmp/storageconfig.hcl \n"
        ));
        script
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::{Program, recognise};

    #[test]
    fn both_start_scripts_are_recognised_with_their_configuration() {
        for chart in [Chart::VaultHelm, Chart::OpenbaoHelm] {
            let program = recognise(
                &["/bin/sh".to_string(), "-ec".to_string()],
                &[chart.start_script()],
            )
            .unwrap();
            let Program::Vault(start) = program else {
                panic!("{chart:?}: not recognised as a server")
            };
            assert_eq!(
                start.copy_from.as_deref(),
                Some(format!("{}/config/extraconfig-from-values.hcl", chart.root()).as_str())
            );
            assert_eq!(start.config_path, "/tmp/storageconfig.hcl");
            assert_eq!(start.placeholders.len(), 6);
            assert_eq!(start.labels_prefix, chart.name());
        }
    }
}
