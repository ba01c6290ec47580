//! The write probe of the test bed: a client per path (the old domain through an ingress
//! gateway, a Service's ClusterIP inside a cluster, ...) writing a unique kv-v2 key every few
//! milliseconds, recording every answer; afterwards every acknowledged write is read back through
//! another endpoint (the Vault that should hold them all). Its report per path: writes,
//! acknowledged, refused, lost (acknowledged but missing afterwards) and the longest window
//! without an acknowledged write.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::httpc::Endpoint;

/// The kv-v2 folder every probe writes under: `secret/probe/<path>/<n>`.
pub const PROBE_FOLDER: &str = "probe";

/// How long one probe write may take before it counts as refused.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// One way clients reach a Vault.
#[derive(Debug, Clone)]
pub struct ProbePath {
    /// Short name; in keys, anything but letters, digits and `-` becomes `-`.
    pub name: String,
    pub endpoint: Endpoint,
}

/// One write and its answer, timed from the probe's start.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub key: String,
    pub sent: Duration,
    pub answered: Duration,
    /// `None`: acknowledged (200 or 204); otherwise why not.
    pub refused: Option<String>,
}

/// The writes of one path.
#[derive(Debug, Clone)]
pub struct PathLog {
    pub name: String,
    pub attempts: Vec<Attempt>,
    /// When the probe stopped, from its start.
    pub stopped: Duration,
}

/// A running probe; [`WriteProbe::stop`] ends it and gives the log.
pub struct WriteProbe {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<PathLog>>,
}

impl WriteProbe {
    /// Start writing through every path, one write at a time per path, one every `every`
    /// (a write that takes longer delays the next), with `token`.
    pub fn start(paths: Vec<ProbePath>, token: &str, every: Duration) -> WriteProbe {
        let (stop, stopped) = watch::channel(false);
        let started = Instant::now();
        let tasks = paths
            .into_iter()
            .map(|path| {
                let mut stopped = stopped.clone();
                let token = token.to_string();
                tokio::spawn(async move {
                    let mut endpoint = path.endpoint.clone();
                    endpoint.timeout = WRITE_TIMEOUT;
                    let mut attempts = Vec::new();
                    let mut next = tokio::time::Instant::now();
                    for n in 0u64.. {
                        if *stopped.borrow() {
                            break;
                        }
                        let key = format!("{PROBE_FOLDER}/{}/{n:06}", key_segment(&path.name));
                        let sent = started.elapsed();
                        let answer = endpoint
                            .json(
                                "PUT",
                                &format!("/v1/secret/data/{key}"),
                                Some(&token),
                                Some(&json!({"data": {"n": n, "path": path.name}})),
                            )
                            .await;
                        let refused = match answer {
                            Ok((200 | 204, _)) => None,
                            Ok((code, body)) => Some(format!("{code} {body}")),
                            Err(error) => Some(error.to_string()),
                        };
                        attempts.push(Attempt {
                            key,
                            sent,
                            answered: started.elapsed(),
                            refused,
                        });
                        next += every;
                        tokio::select! {
                            _ = tokio::time::sleep_until(next) => {}
                            _ = stopped.changed() => {}
                        }
                    }
                    PathLog {
                        name: path.name,
                        attempts,
                        stopped: started.elapsed(),
                    }
                })
            })
            .collect();
        WriteProbe { stop, tasks }
    }

    /// Stop writing; the log of every path.
    pub async fn stop(self) -> Vec<PathLog> {
        let _ = self.stop.send(true);
        let mut logs = Vec::new();
        for task in self.tasks {
            if let Ok(log) = task.await {
                logs.push(log);
            }
        }
        logs
    }
}

/// A path's name as it stands in a key: letters, digits and `-`, anything else made `-`.
fn key_segment(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// What the probe saw on one path, acknowledged writes checked against a Vault.
#[derive(Debug, Clone)]
pub struct PathReport {
    pub name: String,
    pub writes: usize,
    pub acknowledged: usize,
    pub refused: usize,
    /// Acknowledged keys the Vault read back does not hold.
    pub lost: Vec<String>,
    /// The longest time without an acknowledged write (from the start, between two, and to
    /// the stop), and when it began.
    pub longest_window: Duration,
    pub window_from: Duration,
}

impl fmt::Display for PathReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} writes, {} acknowledged, {} refused, {} lost; longest window without an acknowledged write {:.2} s (from {:.2} s)",
            self.name,
            self.writes,
            self.acknowledged,
            self.refused,
            self.lost.len(),
            self.longest_window.as_secs_f64(),
            self.window_from.as_secs_f64(),
        )?;
        if !self.lost.is_empty() {
            write!(f, "; lost: {}", self.lost.join(", "))?;
        }
        Ok(())
    }
}

/// Read every acknowledged write of `logs` back through `vault` with `token`: a write is lost
/// unless the key answers 200 with the value written.
pub async fn check(logs: &[PathLog], vault: &Endpoint, token: &str) -> Vec<PathReport> {
    let mut reports = Vec::new();
    for log in logs {
        let acknowledged: Vec<&Attempt> = log
            .attempts
            .iter()
            .filter(|a| a.refused.is_none())
            .collect();
        let mut lost = Vec::new();
        for attempt in &acknowledged {
            let n: Option<u64> = attempt.key.rsplit('/').next().and_then(|n| n.parse().ok());
            let mut found = false;
            // A read that fails on the way is asked again: only the Vault's answer decides.
            for _ in 0..3 {
                match vault
                    .json(
                        "GET",
                        &format!("/v1/secret/data/{}", attempt.key),
                        Some(token),
                        None,
                    )
                    .await
                {
                    Ok((200, body)) => {
                        found = body.pointer("/data/data/n").and_then(Value::as_u64) == n;
                        break;
                    }
                    Ok(_) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            if !found {
                lost.push(attempt.key.clone());
            }
        }
        let (longest_window, window_from) = longest_window(log);
        reports.push(PathReport {
            name: log.name.clone(),
            writes: log.attempts.len(),
            acknowledged: acknowledged.len(),
            refused: log.attempts.len() - acknowledged.len(),
            lost,
            longest_window,
            window_from,
        });
    }
    reports
}

/// The longest time without an acknowledgement: from the start to the first, between two, and
/// from the last to the stop; and where it began.
fn longest_window(log: &PathLog) -> (Duration, Duration) {
    let mut edges = vec![Duration::ZERO];
    edges.extend(
        log.attempts
            .iter()
            .filter(|a| a.refused.is_none())
            .map(|a| a.answered),
    );
    edges.push(log.stopped);
    edges
        .windows(2)
        .map(|pair| (pair[1].saturating_sub(pair[0]), pair[0]))
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(answered_ms: u64, acknowledged: bool) -> Attempt {
        Attempt {
            key: format!("probe/p/{answered_ms}"),
            sent: Duration::from_millis(answered_ms.saturating_sub(5)),
            answered: Duration::from_millis(answered_ms),
            refused: (!acknowledged).then(|| "503".to_string()),
        }
    }

    #[test]
    fn the_longest_window_spans_refused_writes_and_the_edges() {
        let log = PathLog {
            name: "p".into(),
            attempts: vec![
                attempt(50, true),
                attempt(100, true),
                attempt(150, false),
                attempt(900, false),
                attempt(1000, true),
                attempt(1050, true),
            ],
            stopped: Duration::from_millis(1100),
        };
        assert_eq!(
            longest_window(&log),
            (Duration::from_millis(900), Duration::from_millis(100))
        );
        let silent = PathLog {
            name: "p".into(),
            attempts: vec![attempt(50, false)],
            stopped: Duration::from_millis(700),
        };
        assert_eq!(
            longest_window(&silent),
            (Duration::from_millis(700), Duration::ZERO)
        );
    }
}
