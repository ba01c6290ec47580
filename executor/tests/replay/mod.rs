//! A strict replay server for the tests of planx's cloud checks: on loopback it answers only the
//! HTTP exchanges recorded in `tests/{folder}/*.json`, each file shaped after the documentation
//! page its `source` names, and fails the test on any other request, on a recorded header the
//! request does not carry, and on a recorded exchange left unmade.
//!
//! A recorded request is matched by method, path and query (percent-decoded), and by its body when
//! the recording gives one: `form` for `application/x-www-form-urlencoded`, `json` for JSON. In
//! `json`, the string `"{any:NAME}"` matches any string and keeps it under `NAME`; a response
//! string `"{NAME}"` is replaced by what was kept (an encrypt's plaintext, which the decrypt must
//! give back), and `{base}` anywhere in a response by the server's address. Names are shared by
//! every recording the server holds: recordings answered concurrently keep under distinct names.
//! A response `body` of `null` is sent empty, as actions that answer nothing do.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[allow(
    dead_code,
    reason = "tests/keys_disable.rs serves recordings without running cases"
)]
pub mod cases;
pub mod recorded;

/// Where a test binary's recordings live and which documentation they may cite.
pub struct Fixtures {
    /// The folder under `tests/`.
    pub folder: &'static str,
    /// Prefixes a recording's `source` must start with.
    pub documentation: &'static [&'static str],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recording {
    /// The documentation page the exchanges follow.
    source: String,
    exchanges: Vec<Exchange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    /// May be left unmade (a token the check does not get as far as needing); never made twice.
    #[serde(default)]
    optional: bool,
    request: RecordedRequest,
    response: RecordedResponse,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedRequest {
    method: String,
    /// Path and query, percent-decoded.
    path: String,
    /// Headers the request must carry (names in lowercase).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The exact fields of an `application/x-www-form-urlencoded` body.
    #[serde(default)]
    form: Option<BTreeMap<String, String>>,
    /// The exact JSON body, with `"{any:NAME}"` standing for any string.
    #[serde(default)]
    json: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedResponse {
    status: u16,
    body: Value,
}

/// A request the server answered from the recording, as it arrived.
#[allow(
    dead_code,
    reason = "tests/kms.rs reads the requests; tests/azure.rs only their order"
)]
pub struct Answered {
    /// `FILE#INDEX` of the exchange that answered it.
    pub exchange: String,
    pub method: String,
    /// Path and query as sent (not decoded).
    pub target: String,
    /// Header names in lowercase.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

struct ReceivedRequest {
    method: String,
    /// As sent.
    target: String,
    headers: BTreeMap<String, String>,
    body: String,
}

struct ReplayState {
    /// (name of the file and index, exchange, answered)
    exchanges: Vec<(String, Exchange, bool)>,
    answered: Vec<Answered>,
    /// What `"{any:NAME}"` matched.
    kept: HashMap<String, String>,
    failures: Vec<String>,
}

impl ReplayState {
    fn answer(&mut self, request: ReceivedRequest) -> (u16, String) {
        let path = decode_target(&request.target);
        let form = request
            .headers
            .get("content-type")
            .filter(|t| t.starts_with("application/x-www-form-urlencoded"))
            .map(|_| parse_form(&request.body));
        let json: Option<Value> = serde_json::from_str(&request.body).ok();
        let found = self
            .exchanges
            .iter()
            .enumerate()
            .filter(|(_, (_, exchange, answered))| {
                let recorded = &exchange.request;
                !answered
                    && recorded.method == request.method
                    && recorded.path == path
                    && (recorded.form.is_none() || recorded.form == form)
            })
            .find_map(|(index, (_, exchange, _))| {
                let mut kept = HashMap::new();
                let body_matches = match (&exchange.request.json, &json) {
                    (None, _) => true,
                    (Some(recorded), Some(sent)) => json_matches(recorded, sent, &mut kept),
                    (Some(_), None) => false,
                };
                body_matches.then_some((index, kept))
            });
        let Some((index, kept)) = found else {
            self.failures.push(format!(
                "unrecorded request: {} {path} {form:?} {}",
                request.method, request.body
            ));
            return (
                501,
                r#"{"error":{"code":"Unrecorded","message":"not in the recording"}}"#.into(),
            );
        };
        self.kept.extend(kept);
        let (name, exchange, answered) = &mut self.exchanges[index];
        *answered = true;
        for (header, expected) in &exchange.request.headers {
            let actual = request.headers.get(header);
            if actual != Some(expected) {
                self.failures.push(format!(
                    "{name}: header {header} is {actual:?}, the recording expects {expected:?}"
                ));
            }
        }
        let body = match &exchange.response.body {
            Value::Null => String::new(),
            body => with_kept_values(body, &self.kept).to_string(),
        };
        let status = exchange.response.status;
        self.answered.push(Answered {
            exchange: name.clone(),
            method: request.method,
            target: request.target,
            headers: request.headers,
            body: request.body,
        });
        (status, body)
    }
}

/// `sent` has the shape and values of `recorded`, where `"{any:NAME}"` matches any string and
/// keeps it in `kept`.
fn json_matches(recorded: &Value, sent: &Value, kept: &mut HashMap<String, String>) -> bool {
    match (recorded, sent) {
        (Value::String(pattern), Value::String(value)) => {
            match pattern
                .strip_prefix("{any:")
                .and_then(|rest| rest.strip_suffix('}'))
            {
                Some(name) => {
                    kept.insert(name.to_string(), value.clone());
                    true
                }
                None => pattern == value,
            }
        }
        (Value::Object(recorded), Value::Object(sent)) => {
            recorded.len() == sent.len()
                && recorded.iter().all(|(key, value)| {
                    sent.get(key)
                        .is_some_and(|other| json_matches(value, other, kept))
                })
        }
        (Value::Array(recorded), Value::Array(sent)) => {
            recorded.len() == sent.len()
                && recorded
                    .iter()
                    .zip(sent)
                    .all(|(value, other)| json_matches(value, other, kept))
        }
        _ => recorded == sent,
    }
}

/// `body` with every string `"{NAME}"` replaced by the value kept under `NAME`.
fn with_kept_values(body: &Value, kept: &HashMap<String, String>) -> Value {
    match body {
        Value::String(text) => text
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .and_then(|name| kept.get(name))
            .map_or_else(|| body.clone(), |value| Value::String(value.clone())),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), with_kept_values(value, kept)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|value| with_kept_values(value, kept))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A replay server on loopback for one test.
pub struct Replay {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    state: Arc<Mutex<ReplayState>>,
}

impl Replay {
    /// Serve the exchanges of `files` (names without `.json`), in the order given.
    pub async fn start(fixtures: &Fixtures, files: &[&str]) -> Replay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let mut exchanges = Vec::new();
        for file in files {
            let recording = read_recording(fixtures, file);
            for (index, mut exchange) in recording.exchanges.into_iter().enumerate() {
                let body = exchange.response.body.to_string().replace("{base}", &base);
                exchange.response.body = serde_json::from_str(&body).expect("body");
                exchanges.push((format!("{file}#{index}"), exchange, false));
            }
        }
        let state = Arc::new(Mutex::new(ReplayState {
            exchanges,
            answered: Vec::new(),
            kept: HashMap::new(),
            failures: Vec::new(),
        }));
        let serving = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, serving.clone()));
            }
        });
        Replay { base, state }
    }

    /// The exchanges answered, in order; fails on an unrecorded or mismatched request and on a
    /// recorded exchange that was never requested.
    pub fn finish(self) -> Vec<String> {
        self.finish_with_requests()
            .into_iter()
            .map(|answered| answered.exchange)
            .collect()
    }

    /// As [`Replay::finish`], with each request as it arrived.
    pub fn finish_with_requests(self) -> Vec<Answered> {
        self.try_finish()
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// As [`Replay::finish_with_requests`], what failed returned rather than asserted.
    pub fn try_finish(self) -> Result<Vec<Answered>, String> {
        let mut state = self.state.lock().expect("replay state");
        if !state.failures.is_empty() {
            return Err(format!("replay failures: {:#?}", state.failures));
        }
        let unmade: Vec<&str> = state
            .exchanges
            .iter()
            .filter(|(_, exchange, answered)| !answered && !exchange.optional)
            .map(|(name, _, _)| name.as_str())
            .collect();
        if !unmade.is_empty() {
            return Err(format!("recorded but never requested: {unmade:?}"));
        }
        Ok(std::mem::take(&mut state.answered))
    }

    /// The string a recorded `"{any:NAME}"` matched.
    #[allow(
        dead_code,
        reason = "tests/kms.rs reads what its encrypt requests sent"
    )]
    pub fn kept(&self, name: &str) -> Option<String> {
        self.state
            .lock()
            .expect("replay state")
            .kept
            .get(name)
            .cloned()
    }
}

fn read_recording(fixtures: &Fixtures, file: &str) -> Recording {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(fixtures.folder)
        .join(format!("{file}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    let recording: Recording =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    assert!(
        fixtures
            .documentation
            .iter()
            .any(|prefix| recording.source.starts_with(prefix)),
        "{file}: `source` names the documentation page the exchanges follow (one of {:?})",
        fixtures.documentation
    );
    recording
}

async fn serve_connection(mut stream: TcpStream, state: Arc<Mutex<ReplayState>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let (status, body) = state.lock().expect("replay state").answer(request);
    let response = format!(
        "HTTP/1.1 {status} Replayed\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// One HTTP/1.1 request: request line, headers, a body of `content-length` bytes.
async fn read_request(stream: &mut TcpStream) -> Option<ReceivedRequest> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = String::from_utf8_lossy(&buffer[head_end..head_end + length]).to_string();
    Some(ReceivedRequest {
        method,
        target,
        headers,
        body,
    })
}

/// Path percent-decoded; query with `+` as a space too, as form encoding writes it.
fn decode_target(target: &str) -> String {
    match target.split_once('?') {
        Some((path, query)) => format!(
            "{}?{}",
            percent_decode(path),
            percent_decode(&query.replace('+', " "))
        ),
        None => percent_decode(target),
    }
}

fn parse_form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&name.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = text.get(index + 1..index + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&decoded).to_string()
}
