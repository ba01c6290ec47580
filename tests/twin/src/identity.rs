//! Signed tokens the twin issues: the service-account tokens a projected volume mounts into a pod
//! (what AKS workload identity exchanges with Entra ID) and the access tokens of the Azure
//! emulator. One HMAC-SHA256 key per twin directory, kept in a 0600 file, so tokens stay valid
//! when the twin restarts on the same directory, as a cloud's tokens outlive a client's restart.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The file in the twin's directory holding the signing key.
pub const SIGNING_KEY_FILE: &str = "token-signing-key";

/// Signs and verifies compact JWTs (`HS256`).
pub struct TokenSigner {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").finish_non_exhaustive()
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenSigner {
    /// The signer of the twin directory `dir`: its key file, created on first use.
    pub fn for_dir(dir: &Path) -> std::io::Result<TokenSigner> {
        let path = dir.join(SIGNING_KEY_FILE);
        let secret = match std::fs::read(&path) {
            Ok(secret) if secret.len() >= 32 => secret,
            _ => {
                let secret: Vec<u8> = (0..2)
                    .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
                    .collect();
                crate::kubeconfig::write_private(&path, &URL_SAFE_NO_PAD.encode(&secret))?;
                URL_SAFE_NO_PAD.encode(&secret).into_bytes()
            }
        };
        Ok(TokenSigner {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
        })
    }

    /// A compact JWT carrying `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{payload}");
        let signature = ring::hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    /// The claims of `token` if this signer signed it and its `exp` has not passed.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.trim().split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        ring::hmac::verify(
            &self.key,
            format!("{header}.{payload}").as_bytes(),
            &signature,
        )
        .ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let expires = claims["exp"].as_u64()?;
        (expires > unix_now()).then_some(claims)
    }
}

/// The OIDC issuer of cluster `cluster`'s service-account tokens (AKS publishes one per cluster).
pub fn cluster_issuer(cluster: &str) -> String {
    format!("https://oidc.{cluster}.twin.invalid/")
}

/// A service-account token for `namespace`/`service_account` of `cluster`, for `audience`,
/// valid `lifetime_seconds`: what a projected `serviceAccountToken` volume holds.
pub fn service_account_token(
    signer: &TokenSigner,
    cluster: &str,
    namespace: &str,
    service_account: &str,
    audience: &str,
    lifetime_seconds: u64,
) -> String {
    let now = unix_now();
    signer.sign(&json!({
        "iss": cluster_issuer(cluster),
        "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
        "aud": [audience],
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": service_account}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_with_the_key_of_their_directory_only() {
        let dir = std::env::temp_dir().join(format!("twin-signer-{}", uuid::Uuid::new_v4()));
        let other = std::env::temp_dir().join(format!("twin-signer-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let signer = TokenSigner::for_dir(&dir).unwrap();
        let token = service_account_token(&signer, "new", "vault", "vault", "api://x", 60);
        let claims = signer.verify(&token).unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:vault:vault");
        assert_eq!(claims["iss"], cluster_issuer("new"));
        // The same directory gives the same key (a restarted twin accepts its tokens).
        assert!(TokenSigner::for_dir(&dir).unwrap().verify(&token).is_some());
        assert!(
            TokenSigner::for_dir(&other)
                .unwrap()
                .verify(&token)
                .is_none()
        );
        let expired = signer.sign(&json!({"exp": unix_now() - 1}));
        assert!(signer.verify(&expired).is_none());
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 2, 'x');
        assert!(signer.verify(&tampered).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&other).unwrap();
    }
}
