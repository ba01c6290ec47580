//! Port-forward to pods (`pods/<name>/portforward?ports=...`) over WebSocket with the
//! `v4.channel.k8s.io` framing kube-rs speaks: binary frames whose first byte is the channel
//! (`2i` data, `2i+1` errors for the i-th port), each channel opened by a frame carrying its port
//! (2 bytes, little endian). The pod's address is the one set with `Cluster::set_pod_address`,
//! else its `status.podIP`; a pod cut off the network (`PodFault::NetworkCut`) is reported on
//! the error channel. SPDY (what kubectl's `port-forward` falls back to) is not served.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::api::Query;
use crate::catalog::ResourceType;
use crate::channels::{self, framed};
use crate::server::{ClusterState, ResponseBody};
use crate::status::ApiError;

const PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v5.channel.k8s.io"];
/// v5 clients announce the end of their writes with `[CLOSE_CHANNEL, channel]`.
const CLOSE_CHANNEL: u8 = 255;

pub async fn handle(
    state: &Arc<ClusterState>,
    resource: &'static ResourceType,
    namespace: &str,
    name: &str,
    request: Request<Incoming>,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let pod = state.store.get(resource, namespace, name)?;
    let handshake = channels::accept(
        &request,
        PROTOCOLS,
        "port-forward",
        "the twin serves port-forward over WebSocket with v4.channel.k8s.io only (as kube-rs Api::portforward speaks it); SPDY, which kubectl port-forward uses, is not supported",
    )?;
    let ports = requested_ports(query)?;
    let address = pod_address(state, namespace, name, &pod)?;
    let cut = state
        .faults
        .has_pod_fault(namespace, name, crate::faults::PodFault::NetworkCut);
    let upgrade = hyper::upgrade::on(request);
    let pod_name = format!("{namespace}/{name}");
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let socket =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            bridge(socket, address, ports, pod_name, cut).await;
        }
    });
    channels::switching(&handshake)
}

fn requested_ports(query: &Query) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for value in query.all("ports").iter().flat_map(|v| v.split(',')) {
        let port: u16 = value
            .trim()
            .parse()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| ApiError::bad_request(format!("invalid port {value:?} in ports")))?;
        ports.push(port);
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request(
            "port-forward needs at least one port (?ports=8200)",
        ));
    }
    Ok(ports)
}

pub(crate) fn pod_address(
    state: &ClusterState,
    namespace: &str,
    name: &str,
    pod: &Value,
) -> Result<IpAddr, ApiError> {
    let configured = state
        .pod_addresses
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&format!("{namespace}/{name}"))
        .copied();
    if let Some(address) = configured {
        return Ok(address);
    }
    let pod_ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    pod_ip.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "cannot forward to pod {namespace}/{name}: it has no IP (status.podIP is {pod_ip:?})"
        ))
    })
}

/// What the per-port readers tell the WebSocket writer.
enum Outgoing {
    Frame(Vec<u8>),
    PortClosed,
}

/// Relays between the WebSocket and one TCP connection per port until the client closes or
/// every pod-side connection has ended.
async fn bridge<S>(
    socket: WebSocketStream<S>,
    address: IpAddr,
    ports: Vec<u16>,
    pod_name: String,
    cut: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = socket.split();
    let (outgoing, mut outgoing_receiver) = mpsc::channel::<Outgoing>(64);
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::new();
    let mut open_ports = 0usize;
    for (index, port) in ports.iter().enumerate() {
        let data_channel = (2 * index) as u8;
        for channel in [data_channel, data_channel + 1] {
            if sink
                .send(Message::binary(framed(channel, &port.to_le_bytes())))
                .await
                .is_err()
            {
                return;
            }
        }
        let connected = if cut {
            Err(std::io::Error::other(
                "the pod is cut off the network (injected fault)",
            ))
        } else {
            TcpStream::connect((address, *port)).await
        };
        match connected {
            Ok(stream) => {
                let (mut reader, writer) = stream.into_split();
                writers.push(Some(writer));
                open_ports += 1;
                let outgoing = outgoing.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 32 * 1024];
                    loop {
                        match reader.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(read) => {
                                let frame = Outgoing::Frame(framed(data_channel, &buffer[..read]));
                                if outgoing.send(frame).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = outgoing.send(Outgoing::PortClosed).await;
                });
            }
            Err(error) => {
                writers.push(None);
                let message =
                    format!("error forwarding port {port} to pod {pod_name} at {address}: {error}");
                if sink
                    .send(Message::binary(framed(
                        data_channel + 1,
                        message.as_bytes(),
                    )))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    drop(outgoing);
    if open_ports == 0 {
        let _ = sink.close().await;
        return;
    }
    loop {
        tokio::select! {
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => deliver(&mut writers, data).await,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            out = outgoing_receiver.recv() => match out {
                Some(Outgoing::Frame(frame)) => {
                    if sink.send(Message::binary(frame)).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::PortClosed) => {
                    open_ports -= 1;
                    if open_ports == 0 {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    let _ = sink.close().await;
}

/// Writes a client frame to its port's connection (or half-closes it on a v5 close signal).
async fn deliver(writers: &mut [Option<OwnedWriteHalf>], data: Bytes) {
    let Some((&channel, payload)) = data.split_first() else {
        return;
    };
    if channel == CLOSE_CHANNEL {
        if let Some(writer) = payload
            .first()
            .and_then(|closed| writers.get_mut(usize::from(*closed) / 2))
            .and_then(Option::as_mut)
        {
            let _ = writer.shutdown().await;
        }
        return;
    }
    if channel % 2 != 0 {
        return;
    }
    if let Some(Some(writer)) = writers.get_mut(usize::from(channel) / 2)
        && writer.write_all(payload).await.is_err()
    {
        writers[usize::from(channel) / 2] = None;
    }
}
