//! The only way to the twin's Azure: an HTTP proxy that answers `CONNECT host:443` for the
//! emulated hosts by terminating TLS itself (a certificate for the host from the twin's CA,
//! HTTP/1.1) and serving the emulator; every other CONNECT, and every plain proxied request
//! (`GET http://169.254.169.254/...`), is refused with 403 and logged. It opens no connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::AzureCloud;

/// The longest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;

/// Accepts connections until the runtime stops.
pub async fn serve(listener: TcpListener, cloud: Arc<AzureCloud>, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, peer, cloud.clone(), acceptor.clone()));
    }
}

/// The request line and headers up to the blank line, and whatever followed them.
async fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Some((String::from_utf8_lossy(&buffer).into_owned(), rest));
        }
        if buffer.len() > MAX_HEAD {
            return None;
        }
    }
}

async fn refuse(stream: &mut TcpStream, cloud: &AzureCloud, peer: SocketAddr, target: &str) {
    cloud.record(json!({
        "client": peer.to_string(),
        "refused": target,
        "why": "not an emulated Azure host",
    }));
    let body = format!(
        "the twin's Azure proxy serves only login.microsoftonline.com, graph.microsoft.com, management.azure.com and the twin's key vaults (<name>.vault.azure.net); {target} is refused and nothing leaves this machine\n"
    );
    let answer = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    cloud: Arc<AzureCloud>,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let Some((head, rest)) = read_head(&mut stream).await else {
        return;
    };
    let request_line = head.lines().next().unwrap_or("");
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if !method.eq_ignore_ascii_case("CONNECT") {
        refuse(&mut stream, &cloud, peer, &format!("{method} {target}")).await;
        return;
    }
    let (host, port) = target.rsplit_once(':').unwrap_or((target, ""));
    let service = cloud.service(host);
    if port != "443" || service.is_none() || !rest.is_empty() {
        refuse(&mut stream, &cloud, peer, target).await;
        return;
    }
    if stream
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    let host = host.to_ascii_lowercase();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let cloud = cloud.clone();
        let host = host.clone();
        async move { Ok::<_, Infallible>(super::routes::handle(&cloud, &host, peer, request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
}
