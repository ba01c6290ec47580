//! The twin's certificate authority: a CA generated at start (its PEM goes into the twin's
//! directory) that issues, on demand, a server certificate for whatever name a TLS client asks
//! for (SNI), so the ingress gateways serve every Ingress host over HTTPS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The name of the certificate served to clients that send no SNI.
pub const DEFAULT_NAME: &str = "twin-ingress.invalid";

/// A CA and the certificates it issued.
pub struct Authority {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    provider: Arc<CryptoProvider>,
    issued: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Authority, String> {
        let key = KeyPair::generate().map_err(|e| format!("cannot generate the CA key: {e}"))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| format!("invalid CA parameters: {e}"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        name.push(DnType::OrganizationName, "planx twin");
        params.distinguished_name = name;
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let certificate = params
            .self_signed(&key)
            .map_err(|e| format!("cannot sign the CA certificate: {e}"))?;
        Ok(Authority {
            ca_pem: certificate.pem(),
            ca_der: certificate.der().clone(),
            issuer: Issuer::new(params, key),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            issued: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A certificate (chain and key) for `name` (a DNS name or an IP address).
    pub fn certified_key(&self, name: &str) -> Result<Arc<CertifiedKey>, String> {
        let name = name.to_ascii_lowercase();
        let mut issued = self
            .issued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(key) = issued.get(&name) {
            return Ok(key.clone());
        }
        let key = KeyPair::generate().map_err(|e| format!("cannot generate a key: {e}"))?;
        let mut params = CertificateParams::new(vec![name.clone()])
            .map_err(|e| format!("cannot issue a certificate for {name:?}: {e}"))?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("cannot sign a certificate for {name:?}: {e}"))?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = self
            .provider
            .key_provider
            .load_private_key(private)
            .map_err(|e| format!("cannot load the key for {name:?}: {e}"))?;
        let certified = Arc::new(CertifiedKey::new(
            vec![certificate.der().clone(), self.ca_der.clone()],
            signing,
        ));
        issued.insert(name, certified.clone());
        Ok(certified)
    }

    /// A server configuration answering every SNI name with a certificate for it.
    pub fn server_config(self: &Arc<Authority>) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[derive(Debug)]
struct SniResolver(Arc<Authority>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name().unwrap_or(DEFAULT_NAME);
        self.0.certified_key(name).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_issued_once_per_name() {
        let authority = Authority::generate("test CA").unwrap();
        assert!(
            authority
                .ca_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        let first = authority.certified_key("vault.old.test").unwrap();
        let again = authority.certified_key("VAULT.old.test").unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first.cert.len(), 2);
        assert!(authority.certified_key("127.0.0.1").is_ok());
        let _ = authority.certified_key("not a name!");
        assert!(authority.certified_key("é.test").is_err());
    }
}
