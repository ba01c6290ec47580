//! What a Vault-API server says it is (HashiCorp Vault or OpenBao, and which version, from
//! `sys/seal-status` and `sys/health`), and for each operation whose endpoint differs between
//! them, the endpoint planx calls there or why the operation is unavailable.

use serde_json::Value;

/// The product behind a Vault API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Vault,
    OpenBao,
}

/// A server as it described itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub product: Product,
    /// `major.minor.patch`, any pre-release or build suffix left out.
    pub version: (u32, u32, u32),
    /// The version as the server gave it (`1.19.0+ent`, `2.7.2`).
    pub version_text: String,
    /// HashiCorp Vault Enterprise (`enterprise` in `sys/health`, or a `+ent` version).
    pub enterprise: bool,
}

/// How planx generates (and at once revokes) a root token to prove recovery keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootTokenGeneration {
    /// `sys/generate-root-token` (OpenBao 2.6+) or `sys/generate-root`.
    pub base: &'static str,
    /// Whether the calls carry the token (`X-Vault-Token`).
    pub authenticated: bool,
}

/// The oldest release of each product planx supports: OpenBao's first, and the Vault release
/// OpenBao forked from (raft autopilot, `sys/storage/raft/*` as planx calls them).
const OLDEST_OPENBAO: (u32, u32, u32) = (2, 0, 0);
const OLDEST_VAULT: (u32, u32, u32) = (1, 14, 0);

impl Server {
    /// Identify the server from its `sys/seal-status` and `sys/health` answers. OpenBao says
    /// `commit_date` in its seal status (2.6 and 2.7 do); HashiCorp Vault says `build_date`,
    /// and since 1.16 `enterprise` in its health; OpenBao's versions start at 2.0, so a
    /// server saying only `build_date` with a 1.x version is Vault.
    pub fn identify(seal_status: &Value, health: &Value) -> Result<Server, String> {
        let version_text = seal_status["version"]
            .as_str()
            .or(health["version"].as_str())
            .unwrap_or("")
            .to_string();
        let version = parse_version(&version_text).ok_or_else(|| {
            format!(
                "the server gave no version planx can read (`{version_text}` in sys/seal-status and sys/health)"
            )
        })?;
        let product = if seal_status.get("commit_date").is_some() {
            Product::OpenBao
        } else if health.get("enterprise").is_some() || version.0 < 2 {
            Product::Vault
        } else if seal_status.get("build_date").is_some() {
            Product::OpenBao
        } else {
            return Err(format!(
                "cannot tell whether the server (version {version_text}) is HashiCorp Vault or OpenBao: its sys/seal-status has neither `commit_date` (OpenBao) nor `build_date` (Vault)"
            ));
        };
        let enterprise =
            health["enterprise"].as_bool().unwrap_or(false) || version_text.contains("+ent");
        Ok(Server {
            product,
            version,
            version_text,
            enterprise,
        })
    }

    /// `OpenBao 2.7.2`, `HashiCorp Vault 1.19.0+ent`.
    pub fn describe(&self) -> String {
        match self.product {
            Product::OpenBao => format!("OpenBao {}", self.version_text),
            Product::Vault => format!("HashiCorp Vault {}", self.version_text),
        }
    }

    /// Refuse a release older than planx supports.
    pub fn supported(&self) -> Result<(), String> {
        let oldest = match self.product {
            Product::OpenBao => OLDEST_OPENBAO,
            Product::Vault => OLDEST_VAULT,
        };
        if self.version < oldest {
            return Err(format!(
                "{} is older than planx supports ({} {}.{} or later): upgrade it before the move",
                self.describe(),
                match self.product {
                    Product::OpenBao => "OpenBao",
                    Product::Vault => "HashiCorp Vault",
                },
                oldest.0,
                oldest.1
            ));
        }
        Ok(())
    }

    /// Where a root token is generated, given whether the plan gives a token:
    /// - OpenBao 2.6+: the authenticated `sys/generate-root-token` (the token needs `sudo`);
    /// - OpenBao before 2.6: the unauthenticated `sys/generate-root` (2.5.3 and later block it
    ///   unless the listener sets `disable_unauthed_generate_root_endpoints = false`);
    /// - HashiCorp Vault 2.0+: `sys/generate-root` with a token, unless unauthenticated access
    ///   is enabled;
    /// - HashiCorp Vault 1.x: the unauthenticated `sys/generate-root`.
    pub fn root_token_generation(&self, token_given: bool) -> Result<RootTokenGeneration, String> {
        match self.product {
            Product::OpenBao if self.version >= (2, 6, 0) => {
                if !token_given {
                    return Err(format!(
                        "{} generates root tokens only at the authenticated sys/generate-root-token: give the step a `token` with `sudo` on sys/generate-root-token/*",
                        self.describe()
                    ));
                }
                Ok(RootTokenGeneration {
                    base: "sys/generate-root-token",
                    authenticated: true,
                })
            }
            Product::OpenBao => Ok(RootTokenGeneration {
                base: "sys/generate-root",
                authenticated: false,
            }),
            Product::Vault if self.version >= (2, 0, 0) => {
                if !token_given {
                    return Err(format!(
                        "{} asks for a token on sys/generate-root unless unauthenticated access to it is enabled: give the step a `token` with `sudo` on sys/generate-root/*",
                        self.describe()
                    ));
                }
                Ok(RootTokenGeneration {
                    base: "sys/generate-root",
                    authenticated: true,
                })
            }
            Product::Vault => Ok(RootTokenGeneration {
                base: "sys/generate-root",
                authenticated: false,
            }),
        }
    }

    /// What to tell a person when the server refuses root-token generation with 405 (the
    /// unauthenticated endpoints switched off).
    pub fn root_generation_blocked(&self) -> String {
        match self.product {
            Product::OpenBao => format!(
                "{} blocks the unauthenticated sys/generate-root endpoints (`disable_unauthed_generate_root_endpoints`, true by default since 2.5.3): upgrade to OpenBao 2.6 or later, where planx uses sys/generate-root-token with a token, or set it to false on the listener for the move",
                self.describe()
            ),
            Product::Vault => format!(
                "{} refuses root-token generation at sys/generate-root: enable it for the move, or prove the recovery keys by hand",
                self.describe()
            ),
        }
    }
}

/// `2.7.2`, `v1.19.0-beta1`, `1.15.2+ent` → the three numbers.
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let core = text.trim_start_matches('v').split(['-', '+', ' ']).next()?;
    let mut numbers = core.split('.').map(|n| n.parse::<u32>().ok());
    let major = numbers.next()??;
    let minor = numbers.next().flatten().unwrap_or(0);
    let patch = numbers.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_are_read_without_their_suffixes() {
        assert_eq!(parse_version("2.7.2"), Some((2, 7, 2)));
        assert_eq!(parse_version("v1.19.0-beta1"), Some((1, 19, 0)));
        assert_eq!(parse_version("1.15.2+ent"), Some((1, 15, 2)));
        assert_eq!(parse_version("2.0"), Some((2, 0, 0)));
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("x.1"), None);
    }

    #[test]
    fn openbao_says_commit_date_and_vault_says_enterprise_or_a_1x_build_date() {
        let openbao = Server::identify(
            &json!({"version": "2.7.2", "commit_date": "2026-10-26T20:32:27Z"}),
            &json!({"version": "2.7.2"}),
        )
        .unwrap();
        assert_eq!(openbao.product, Product::OpenBao);
        assert_eq!(openbao.describe(), "OpenBao 2.7.2");
        let vault_2 = Server::identify(
            &json!({"version": "2.0.0", "build_date": "2026-04-14T00:00:00Z"}),
            &json!({"version": "2.0.0", "enterprise": false}),
        )
        .unwrap();
        assert_eq!(vault_2.product, Product::Vault);
        let vault_1_15 = Server::identify(
            &json!({"version": "1.15.2+ent", "build_date": "2023-11-06T11:33:28Z"}),
            &json!({"version": "1.15.2+ent"}),
        )
        .unwrap();
        assert_eq!(
            (vault_1_15.product, vault_1_15.enterprise),
            (Product::Vault, true)
        );
        let unknown = Server::identify(&json!({"version": "3.0.0"}), &json!({})).unwrap_err();
        assert!(unknown.contains("cannot tell"), "{unknown}");
    }

    fn server(product: Product, version: (u32, u32, u32)) -> Server {
        Server {
            product,
            version,
            version_text: format!("{}.{}.{}", version.0, version.1, version.2),
            enterprise: false,
        }
    }

    #[test]
    fn each_release_generates_root_tokens_where_it_documents() {
        let cases = [
            (
                Product::OpenBao,
                (2, 7, 2),
                true,
                Ok(("sys/generate-root-token", true)),
            ),
            (
                Product::OpenBao,
                (2, 6, 2),
                false,
                Err("sys/generate-root-token"),
            ),
            (
                Product::OpenBao,
                (2, 5, 2),
                false,
                Ok(("sys/generate-root", false)),
            ),
            (
                Product::Vault,
                (1, 19, 0),
                false,
                Ok(("sys/generate-root", false)),
            ),
            (
                Product::Vault,
                (2, 0, 0),
                true,
                Ok(("sys/generate-root", true)),
            ),
            (Product::Vault, (2, 0, 0), false, Err("asks for a token")),
        ];
        for (product, version, token, expected) in cases {
            let got = server(product, version).root_token_generation(token);
            match (got, expected) {
                (Ok(generation), Ok((base, authenticated))) => {
                    assert_eq!(
                        (generation.base, generation.authenticated),
                        (base, authenticated)
                    );
                }
                (Err(message), Err(part)) => assert!(message.contains(part), "{message}"),
                (got, expected) => {
                    panic!("{product:?} {version:?}: {got:?}, expected {expected:?}")
                }
            }
        }
    }

    #[test]
    fn releases_older_than_supported_are_refused() {
        assert!(server(Product::Vault, (1, 13, 9)).supported().is_err());
        assert!(server(Product::Vault, (1, 14, 0)).supported().is_ok());
        assert!(server(Product::OpenBao, (2, 0, 0)).supported().is_ok());
    }
}
