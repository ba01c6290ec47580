//! planx's one HTTP policy, for every client it builds (Vault, transit, the cloud key services):
//! rustls with the process's crypto provider, the system's roots plus an optional CA
//! (`PLANX_CA_FILE`, PEM), a connect timeout, host names pinned as `--resolve` asks, and no
//! redirect ever followed, so a token goes to no host planx did not address. The TLS settings
//! are built once per CA bundle and shared by every client.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Install the process-wide TLS provider once (kube and reqwest would otherwise disagree).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client builder with the policy applied, trusting `PLANX_CA_FILE` too when it is set;
/// callers add a whole-request timeout where one fits (an API call, not a snapshot stream).
pub fn builder(resolve: &[(String, SocketAddr)]) -> Result<reqwest::ClientBuilder, String> {
    let ca_file = std::env::var_os("PLANX_CA_FILE").filter(|p| !p.is_empty());
    builder_with(resolve, ca_file.as_deref().map(Path::new))
}

/// [`builder`] with the extra CA bundle given.
pub fn builder_with(
    resolve: &[(String, SocketAddr)],
    ca_file: Option<&Path>,
) -> Result<reqwest::ClientBuilder, String> {
    install_crypto_provider();
    let extra_pem = match ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| format!("cannot read PLANX_CA_FILE {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let tls = tls_config(extra_pem.as_deref()).map_err(|message| match ca_file {
        Some(path) => format!("PLANX_CA_FILE {}: {message}", path.display()),
        None => message,
    })?;
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    for (host, address) in resolve {
        builder = builder.resolve(host, *address);
    }
    Ok(builder)
}

/// The TLS settings every client is built with, for one extra CA bundle (or none): what reqwest
/// would build (the platform's verifier over the system's roots plus the bundle's, every TLS
/// version the provider offers, HTTP/1.1), built once and shared. Loading the system's roots took
/// ~2 ms a client, a snapshot save's own client paying it inside the outage.
fn tls_config(extra_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    static BUILT: Mutex<Vec<(Option<Vec<u8>>, rustls::ClientConfig)>> = Mutex::new(Vec::new());
    let key = extra_pem.map(<[u8]>::to_vec);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, config)) = built.iter().find(|(pem, _)| *pem == key) {
        return Ok(config.clone());
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = match extra_pem {
        Some(pem) => {
            let roots = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("is not a PEM bundle: {e}"))?;
            if roots.is_empty() {
                return Err("holds no certificate".into());
            }
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
        }
        None => rustls_platform_verifier::Verifier::new(provider.clone()),
    }
    .map_err(|e| format!("cannot load the system's CA certificates: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| format!("no TLS version to offer: {e}"))?
        // `dangerous` only names rustls's door for a verifier of one's own: the platform's
        // verifier goes in through it, exactly as reqwest puts it in.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    built.push((key, config.clone()));
    Ok(config)
}
