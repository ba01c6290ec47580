//! The HTTP/1.1 server of one cluster: accepting connections, the response body type (whole or
//! streamed), and turning every request into a response through `api::handle`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::faults::Faults;
use crate::status::ApiError;
use crate::store::Store;

/// Everything a request handler of one cluster needs.
#[derive(Debug)]
pub struct ClusterState {
    pub name: String,
    pub address: std::net::SocketAddr,
    pub store: Arc<Store>,
    pub faults: Arc<Faults>,
    pub settings: ServerSettings,
    /// Addresses port-forward connects to, by `<namespace>/<pod>`, overriding `status.podIP`.
    pub pod_addresses: Arc<std::sync::Mutex<std::collections::HashMap<String, std::net::IpAddr>>>,
    /// The node running the cluster's workloads, when the twin runs them.
    pub node: Option<Arc<crate::node::Node>>,
}

/// Tunables of the API server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// How often a watch that allows bookmarks gets one while idle.
    pub bookmark_interval: Duration,
    /// Watch duration when the client gives no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            bookmark_interval: Duration::from_secs(30),
            default_watch_timeout: Duration::from_secs(1800),
            max_body_bytes: 8 << 20,
        }
    }
}

/// A response body: one buffer, or a stream of chunks (watches).
pub enum ResponseBody {
    Whole(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ResponseBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(receiver) => receiver
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Whole(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ResponseBody::Whole(None) => SizeHint::with_exact(0),
            ResponseBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// A JSON response with status `code`.
pub fn json_response(code: u16, value: &Value) -> Response<ResponseBody> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Response::builder()
        .status(code)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(ResponseBody::Whole(Some(Bytes::from(bytes))))
        .unwrap_or_else(|_| Response::new(ResponseBody::Whole(None)))
}

/// The `Status` response for `error`.
pub fn error_response(error: &ApiError) -> Response<ResponseBody> {
    json_response(error.code, &error.to_status())
}

/// Serves `listener` until `shutdown` turns true; dropping the future closes every connection.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ClusterState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(crate::api::handle(state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    connections.shutdown().await;
}
