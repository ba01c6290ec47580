//! planx's one HTTP policy, for every client it builds (Vault, transit, the cloud key services):
//! rustls with the process's crypto provider, the system's roots plus an optional CA
//! (`PLANX_CA_FILE`, PEM), a connect timeout, host names pinned as `--resolve` asks, and no
//! redirect ever followed, so a token goes to no host planx did not address.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

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
    let mut builder = reqwest::Client::builder()
        .tls_backend_rustls()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read PLANX_CA_FILE {}: {e}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("PLANX_CA_FILE {} is not a PEM bundle: {e}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!(
                "PLANX_CA_FILE {} holds no certificate",
                path.display()
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    for (host, address) in resolve {
        builder = builder.resolve(host, *address);
    }
    Ok(builder)
}
