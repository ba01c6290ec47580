//! A small HTTP/1.1 client for the twin's own calls: one connection per request to a socket
//! address, plain or TLS (verifying against given roots, or not verifying at all as an ingress
//! controller's upstream does by default), plus a JSON helper for Vault's API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;

/// How to speak to the server.
#[derive(Clone)]
pub enum Transport {
    Plain,
    /// TLS with this client configuration; `server_name` is sent as SNI (when the configuration
    /// enables SNI) and checked against the certificate (when it verifies).
    Tls {
        config: Arc<rustls::ClientConfig>,
        server_name: Option<String>,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Plain => f.write_str("Plain"),
            Transport::Tls { server_name, .. } => f
                .debug_struct("Tls")
                .field("server_name", server_name)
                .finish_non_exhaustive(),
        }
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that accepts any server certificate (ingress-nginx's default for
/// HTTPS upstreams: `proxy_ssl_verify off`). `sni` decides whether the server name is sent.
pub fn insecure_client_config(sni: bool) -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.enable_sni = sni;
    Arc::new(config)
}

/// A client configuration trusting only the certificates in `ca_pem`.
pub fn verifying_client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, HttpError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        let certificate: rustls::pki_types::CertificateDer<'static> =
            certificate.map_err(|e| HttpError(format!("bad CA certificate: {e}")))?;
        roots
            .add(certificate)
            .map_err(|e| HttpError(format!("bad CA certificate: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens a connection to `address` ready for requests with bodies of type `B`.
pub async fn connect<B>(
    address: SocketAddr,
    transport: &Transport,
) -> Result<hyper::client::conn::http1::SendRequest<B>, HttpError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| HttpError(format!("cannot connect to {address}: {e}")))?;
    let _ = stream.set_nodelay(true);
    match transport {
        Transport::Plain => handshake(TokioIo::new(stream), address).await,
        Transport::Tls {
            config,
            server_name,
        } => {
            let name = match server_name {
                Some(name) => ServerName::try_from(name.clone())
                    .map_err(|e| HttpError(format!("invalid TLS server name {name:?}: {e}")))?,
                None => ServerName::IpAddress(address.ip().into()),
            };
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, stream)
                .await
                .map_err(|e| HttpError(format!("TLS handshake with {address} failed: {e}")))?;
            handshake(TokioIo::new(tls), address).await
        }
    }
}

async fn handshake<I, B>(
    io: I,
    address: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<B>, HttpError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| HttpError(format!("HTTP handshake with {address} failed: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `request` over a new connection to `address`; the response's body streams.
pub async fn send<B>(
    address: SocketAddr,
    transport: &Transport,
    request: Request<B>,
) -> Result<Response<Incoming>, HttpError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut sender = connect(address, transport).await?;
    sender
        .send_request(request)
        .await
        .map_err(|e| HttpError(format!("request to {address} failed: {e}")))
}

/// Where Vault-style JSON calls go: an address, how to speak to it, the `Host` header, and how
/// long one call may take.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub transport: Transport,
    pub host: String,
    pub timeout: Duration,
}

impl Endpoint {
    /// Plain HTTP to `address`, `Host` the address itself, 10 s per call.
    pub fn plain(address: SocketAddr) -> Endpoint {
        Endpoint {
            address,
            transport: Transport::Plain,
            host: address.to_string(),
            timeout: Duration::from_secs(10),
        }
    }

    /// `method path` with an optional `X-Vault-Token` and JSON body: the status code and the
    /// JSON answer (`Null` for an empty or non-JSON body).
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), HttpError> {
        let (code, bytes) = self.bytes(method, path, token, body).await?;
        Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Like `json`, answering the raw body.
    pub async fn bytes(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Bytes), HttpError> {
        let method = hyper::Method::from_bytes(method.as_bytes())
            .map_err(|e| HttpError(format!("invalid method {method:?}: {e}")))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host);
        if let Some(token) = token {
            builder = builder.header("X-Vault-Token", token);
        }
        let payload = match body {
            Some(body) => {
                builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(payload))
            .map_err(|e| HttpError(format!("invalid request: {e}")))?;
        let address = self.address;
        let exchange = async {
            let response = send(address, &self.transport, request).await?;
            let code = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| HttpError(format!("reading the answer of {address} failed: {e}")))?
                .to_bytes();
            Ok((code, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                HttpError(format!(
                    "{address} did not answer within {:?}",
                    self.timeout
                ))
            })?
    }
}
