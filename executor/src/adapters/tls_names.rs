//! Whether a TLS server's certificate is valid for a host name, read with a handshake that goes
//! no further than the certificate: what a node joining a raft cluster at `https://HOST:8200`
//! will check against HOST. The names only, or, given the CA the joining node is given, the
//! chain to that CA as well.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Why a certificate would not do for a joining node, or could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateRefusal {
    /// The CA given cannot be used to verify anything.
    UnusableCa(String),
    /// The certificate is not valid for the host asked (the names it has).
    Names(String),
    /// The certificate names the host but does not chain to the CA given.
    Chain(String),
    /// No certificate was read: no TLS server answered, or the address cannot be asked.
    Unread(String),
}

impl std::fmt::Display for CertificateRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertificateRefusal::UnusableCa(why)
            | CertificateRefusal::Names(why)
            | CertificateRefusal::Chain(why)
            | CertificateRefusal::Unread(why) => f.write_str(why),
        }
    }
}

/// Reads the certificate's names (and verifies its chain when given a CA), then stops the
/// handshake.
#[derive(Debug)]
struct NameCheck {
    /// What the certificate said: `Ok` when it will do for the name asked, else why not.
    answer: Mutex<Option<Result<(), CertificateRefusal>>>,
    schemes: Vec<SignatureScheme>,
    /// Verifies the chain (and the name) against the CA the joining node is given.
    chain: Option<Arc<WebPkiServerVerifier>>,
}

/// Stops the handshake once the names are read.
const NAMES_READ: &str = "planx read the certificate's names";

impl ServerCertVerifier for NameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let names = rustls::server::ParsedCertificate::try_from(end_entity)
            .and_then(|certificate| rustls::client::verify_server_name(&certificate, server_name))
            .map_err(|error| CertificateRefusal::Names(error.to_string()));
        let answer = match (&self.chain, names) {
            (Some(chain), Ok(())) => chain
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(drop)
                .map_err(|error| CertificateRefusal::Chain(error.to_string())),
            (_, names) => names,
        };
        *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
        Err(rustls::Error::General(NAMES_READ.into()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(NAMES_READ.into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(NAMES_READ.into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// Connect to `address` asking for `host` (SNI) and read the certificate it presents: `Ok(())`
/// when the certificate is valid for `host` and, given `ca_pem` (the CA a joining node is
/// given), chains to that CA; else why not.
pub fn certificate_is_valid_for(
    address: SocketAddr,
    host: &str,
    ca_pem: Option<&str>,
) -> Result<(), CertificateRefusal> {
    let unread = |why: String| CertificateRefusal::Unread(why);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match ca_pem {
        Some(pem) => Some(chain_verifier(pem, provider.clone())?),
        None => None,
    };
    let check = Arc::new(NameCheck {
        answer: Mutex::new(None),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
        chain,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unread(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(check.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| unread(format!("`{host}` is not a host name TLS can ask for")))?;
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| unread(e.to_string()))?;
    let mut socket = TcpStream::connect_timeout(&address, Duration::from_secs(10))
        .map_err(|e| unread(format!("cannot connect: {e}")))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| unread(e.to_string()))?;
    let outcome = loop {
        match connection.complete_io(&mut socket) {
            Ok(_) if !connection.is_handshaking() => break Ok(()),
            Ok(_) => {}
            Err(error) => break Err(error),
        }
    };
    let _ = socket.flush();
    if let Some(answer) = check
        .answer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return answer;
    }
    match outcome {
        Ok(()) => Err(unread("the handshake ended without a certificate".into())),
        Err(error) => Err(unread(format!("no TLS server answered: {error}"))),
    }
}

/// A verifier that trusts only the certificates of `pem`.
fn chain_verifier(
    pem: &str,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, CertificateRefusal> {
    let unusable = CertificateRefusal::UnusableCa;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let certificate =
            certificate.map_err(|e| unusable(format!("it is not a PEM certificate: {e}")))?;
        roots
            .add(certificate)
            .map_err(|e| unusable(format!("it cannot be a root: {e}")))?;
    }
    if roots.is_empty() {
        return Err(unusable("it holds no PEM certificate".into()));
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| unusable(e.to_string()))
}
