//! Secrets as planx holds them: resolved from the references a plan carries (`env:NAME`,
//! `file:PATH`) into values that print as `<secret>` and never reach a log, the journal or argv.

use std::fmt;

/// A secret value. `Debug` and `Display` never show it; only [`Secret::expose`] does, at the
/// one place a request needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for a request header or body. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Lines of a multi-value secret (recovery keys, one per line), each a secret.
    pub fn lines(&self) -> Vec<Secret> {
        self.0
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(Secret::new)
            .collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Why a secret reference could not be resolved. Names the reference, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError(pub String);

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resolve `env:NAME` or `file:PATH` (relative to `base`). `prompt` is answered by the caller,
/// which owns the terminal.
pub fn resolve(reference: &str, base: &std::path::Path) -> Result<Secret, SecretError> {
    if let Some(name) = reference.strip_prefix("env:") {
        return match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim().to_string())),
            Ok(_) => Err(SecretError(format!("environment variable {name} is empty"))),
            Err(_) => Err(SecretError(format!(
                "environment variable {name} is not set (the plan's secret reference `env:{name}`)"
            ))),
        };
    }
    if let Some(path) = reference.strip_prefix("file:") {
        let path = base.join(path);
        return match std::fs::read_to_string(&path) {
            Ok(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim_end().to_string())),
            Ok(_) => Err(SecretError(format!(
                "the secret file {} is empty",
                path.display()
            ))),
            Err(error) => Err(SecretError(format!(
                "cannot read the secret file {}: {error}",
                path.display()
            ))),
        };
    }
    Err(SecretError(format!(
        "`{reference}` is not a secret reference planx can read here; use env:NAME or file:PATH"
    )))
}

/// Ask for a secret on the terminal, echo off: one value per line, an empty line ends (a token
/// is one line, recovery keys one per line). Refused without a terminal: CI gives env: or file:.
pub fn prompt(param: &str) -> Result<Secret, SecretError> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(SecretError(format!(
            "secret `{param}` is set to `prompt` and there is no terminal to ask on; give env:NAME or file:PATH instead"
        )));
    }
    eprintln!(
        "secret `{param}`: type or paste it (hidden), one value per line, an empty line ends"
    );
    let mut lines = Vec::new();
    loop {
        let line = rpassword::prompt_password(if lines.is_empty() {
            "> "
        } else {
            "> (empty line ends) "
        })
        .map_err(|e| {
            SecretError(format!(
                "cannot read secret `{param}` from the terminal: {e}"
            ))
        })?;
        if line.trim().is_empty() {
            break;
        }
        lines.push(line.trim().to_string());
    }
    if lines.is_empty() {
        return Err(SecretError(format!("no value given for secret `{param}`")));
    }
    Ok(Secret::new(lines.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hvs.PLANTEDtokenValue");
        assert_eq!(format!("{secret} {secret:?}"), "<secret> <secret>");
        assert_eq!(format!("{:?}", secret.lines()), "[<secret>]");
    }

    #[test]
    fn references() {
        let dir = std::env::temp_dir().join(format!("planx-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keys"), "key-one\nkey-two\n\n").unwrap();
        let keys = resolve("file:keys", &dir).unwrap();
        assert_eq!(
            keys.lines().iter().map(Secret::expose).collect::<Vec<_>>(),
            ["key-one", "key-two"]
        );
        let missing = resolve("file:nope", &dir).unwrap_err();
        assert!(missing.0.starts_with("cannot read the secret file"));
        let unset = resolve("env:PLANX_TEST_SURELY_UNSET", &dir).unwrap_err();
        assert!(unset.0.contains("PLANX_TEST_SURELY_UNSET is not set"));
        assert!(resolve("hvs.literal", &dir).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
