//! The WebSocket channel protocols (`v4.channel.k8s.io`, `v5.channel.k8s.io`) that port-forward
//! and exec speak: the upgrade handshake a request must offer, the `101 Switching Protocols`
//! answer, and frames whose first byte is the channel.

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::server::ResponseBody;
use crate::status::ApiError;

/// An accepted upgrade: the client's key and the protocol chosen.
pub struct Handshake {
    key: String,
    protocol: &'static str,
}

/// Checks that `request` (for `what`: "port-forward", "exec") is a GET or POST offering a
/// WebSocket upgrade with one of `protocols`, the first the client offers that the twin serves;
/// `refusal` says what the twin serves when it is not.
pub fn accept(
    request: &Request<Incoming>,
    protocols: &[&'static str],
    what: &str,
    refusal: &str,
) -> Result<Handshake, ApiError> {
    if request.method() != Method::GET && request.method() != Method::POST {
        return Err(ApiError::method_not_allowed(format!(
            "{what} accepts GET and POST, not {}",
            request.method()
        )));
    }
    let header = |name: hyper::header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let key = header(hyper::header::SEC_WEBSOCKET_KEY);
    if !header(hyper::header::UPGRADE).eq_ignore_ascii_case("websocket") || key.is_empty() {
        return Err(ApiError::bad_request(refusal.to_string()));
    }
    let offered = header(hyper::header::SEC_WEBSOCKET_PROTOCOL);
    let protocol = protocols
        .iter()
        .find(|protocol| offered.split(',').any(|o| o.trim() == **protocol))
        .ok_or_else(|| ApiError::bad_request(format!("{refusal}; offered: {offered:?}")))?;
    Ok(Handshake { key, protocol })
}

/// The `101 Switching Protocols` answer to an accepted handshake.
pub fn switching(handshake: &Handshake) -> Result<Response<ResponseBody>, ApiError> {
    Response::builder()
        .status(101)
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "websocket")
        .header(
            hyper::header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(handshake.key.as_bytes()),
        )
        .header(hyper::header::SEC_WEBSOCKET_PROTOCOL, handshake.protocol)
        .body(ResponseBody::Whole(None))
        .map_err(|error| ApiError::new(500, "InternalError", error.to_string()))
}

/// A frame on `channel`.
pub fn framed(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(payload);
    frame
}
