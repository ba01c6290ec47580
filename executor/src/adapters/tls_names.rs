//! Whether a TLS server's certificate is valid for a host name, read with a handshake that
//! looks only at the names (the chain is not verified and the handshake goes no further): what a
//! node joining a raft cluster at `https://HOST:8200` will check against HOST.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Reads the certificate's names, then stops the handshake.
#[derive(Debug)]
struct NameCheck {
    /// What the certificate said: `Ok` when it is valid for the name asked, else why not.
    answer: Mutex<Option<Result<(), String>>>,
    schemes: Vec<SignatureScheme>,
}

/// Stops the handshake once the names are read.
const NAMES_READ: &str = "planx read the certificate's names";

impl ServerCertVerifier for NameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let answer = rustls::server::ParsedCertificate::try_from(end_entity)
            .and_then(|certificate| rustls::client::verify_server_name(&certificate, server_name))
            .map_err(|error| error.to_string());
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
/// when the certificate is valid for `host`, `Err` saying why not (the names it has, or that no
/// TLS server answered).
pub fn certificate_is_valid_for(address: SocketAddr, host: &str) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let check = Arc::new(NameCheck {
        answer: Mutex::new(None),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(check.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` is not a host name TLS can ask for"))?;
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut socket = TcpStream::connect_timeout(&address, Duration::from_secs(10))
        .map_err(|e| format!("cannot connect: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
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
        Ok(()) => Err("the handshake ended without a certificate".into()),
        Err(error) => Err(format!("no TLS server answered: {error}")),
    }
}
