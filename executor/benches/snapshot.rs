//! Snapshot transfer benchmark: planx's streaming raft-snapshot save and restore versus curl doing
//! the same two transfers against the same real OpenBao server, at a small and a large snapshot;
//! prints throughput, the planx/curl ratio and planx's peak RSS (a table, never an assertion).
//!
//! One single-node raft OpenBao runs on a loopback address (stopped by a drop guard, even on a
//! panic). It is filled with random base64 in a kv-v1 mount, ~700 KB a value (below raft's 1 MiB
//! entry limit), until a snapshot reaches each target size (`PLANX_BENCH_SIZES_MB`, default
//! `25,110`). Each planx transfer runs in a child process (this binary re-executed with
//! `--child`, the token in `PLANX_BENCH_TOKEN`, never argv), so the peak RSS it reports
//! (`VmHWM`) belongs to that transfer alone; the parent times it, process start included. curl
//! gets the token from a 0600 header file. After each restore the parent waits until a marker
//! written after the save reads back as it was in the snapshot and `sys/health` answers 200,
//! before the next transfer. Every figure is the median of three runs.
//!
//! Then, at the largest size, a breakdown: scratch copies of `snapshot_save` and
//! `snapshot_restore_force` with one step removed or changed each, to show where planx's time
//! goes. Run with `cargo bench -p planx --bench snapshot`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use planx::secrets::Secret;
use planx::vault::Vault;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

const TOKEN_ENV: &str = "PLANX_BENCH_TOKEN";
const IP: &str = "127.0.91.1";
const VALUE_CHARS: usize = 700_000;
const RUNS: usize = 3;
const MB: f64 = 1e6;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
    } else {
        bench();
    }
}

// ---------------------------------------------------------------------------------------------
// The child: one transfer, then its peak RSS.

/// `--child MODE ADDRESS PATH [SHA256]`; prints `sha256=… bytes=… chunks=… vmhwm_kb=…`.
fn child(args: &[String]) {
    let [mode, address, path, rest @ ..] = args else {
        panic!("usage: --child MODE ADDRESS PATH [SHA256]");
    };
    let path = Path::new(path);
    let token = Secret::new(std::env::var(TOKEN_ENV).expect("the token in PLANX_BENCH_TOKEN"));
    planx::vault::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let expected = || rest.first().expect("the SHA-256 to restore").as_str();
    let (sha256, bytes, chunks) = runtime.block_on(async {
        let vault = Vault::new(address, &[]).expect("client");
        match mode.as_str() {
            "save" => {
                let file = vault
                    .snapshot_save(&token, path, |_| {})
                    .await
                    .expect("planx snapshot save");
                (file.sha256, file.bytes, 0)
            }
            "restore" => {
                vault
                    .snapshot_restore_force(&token, path, expected(), |_| {})
                    .await
                    .expect("planx snapshot restore");
                (String::new(), 0, 0)
            }
            save if save.starts_with("save-") => {
                let knobs = SaveKnobs::parse(save);
                scratch_save(address, &token, path, knobs).await
            }
            restore if restore.starts_with("restore-") => {
                let knobs = RestoreKnobs::parse(restore);
                scratch_restore(address, &token, path, expected(), knobs).await;
                (String::new(), 0, 0)
            }
            other => panic!("unknown child mode {other}"),
        }
    });
    println!(
        "sha256={sha256} bytes={bytes} chunks={chunks} vmhwm_kb={}",
        vmhwm_kb()
    );
}

/// Peak resident set of this process, in KiB.
fn vmhwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Where the scratch save puts the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// `tokio::fs::File::write_all` per received chunk, as `snapshot_save` does.
    Direct,
    /// The same file behind a 1 MiB `tokio::io::BufWriter`.
    Buffered,
    /// A blocking thread fed through a bounded channel: it hashes and writes (1 MiB `BufWriter`).
    Pipelined,
    /// Nowhere: the network alone.
    Discard,
}

/// What the scratch save does, from its mode: `save-[buf|pipe|discard]-[nohash]-[sync]-[check]`
/// (`save-bare`: the direct sink, hashing, neither fsync nor check).
#[derive(Clone, Copy)]
struct SaveKnobs {
    sink: Sink,
    hash: bool,
    sync: bool,
    check: bool,
}

impl SaveKnobs {
    fn parse(mode: &str) -> SaveKnobs {
        let sink = if mode.contains("pipe") {
            Sink::Pipelined
        } else if mode.contains("buf") {
            Sink::Buffered
        } else if mode.contains("discard") {
            Sink::Discard
        } else {
            Sink::Direct
        };
        SaveKnobs {
            sink,
            hash: !mode.contains("nohash"),
            sync: mode.contains("sync"),
            check: mode.contains("check"),
        }
    }
}

/// A scratch copy of `Vault::snapshot_save` (same client settings, same loop), with each step
/// optional and the file writes done one of several ways. Returns the SHA-256, the byte count
/// and how many chunks the response stream yielded.
async fn scratch_save(
    address: &str,
    token: &Secret,
    path: &Path,
    knobs: SaveKnobs,
) -> (String, u64, u64) {
    let http = client();
    let response = http
        .get(format!("{address}/v1/sys/storage/raft/snapshot"))
        .header("X-Vault-Token", token.expose())
        .send()
        .await
        .expect("snapshot answers");
    assert_eq!(response.status().as_u16(), 200, "snapshot status");
    let mut hasher = Sha256::new();
    let (mut bytes, mut chunks) = (0u64, 0u64);
    let mut stream = response.bytes_stream();
    let sha256 = match knobs.sink {
        Sink::Direct | Sink::Buffered => {
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true).create_new(true).mode(0o600);
            let file = options.open(path).await.expect("create");
            let capacity = if knobs.sink == Sink::Buffered {
                1 << 20
            } else {
                // A zero-capacity BufWriter passes every write straight through.
                0
            };
            let mut file = tokio::io::BufWriter::with_capacity(capacity, file);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("chunk");
                if knobs.hash {
                    hasher.update(&chunk);
                }
                file.write_all(&chunk).await.expect("write");
                bytes += chunk.len() as u64;
                chunks += 1;
            }
            file.flush().await.expect("flush");
            if knobs.sync {
                file.get_ref().sync_all().await.expect("sync");
            }
            hex(&hasher.finalize())
        }
        Sink::Pipelined => {
            let (sender, writer) = spawn_writer(path, knobs);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("chunk");
                bytes += chunk.len() as u64;
                chunks += 1;
                sender.send(chunk).await.expect("the writer runs");
            }
            drop(sender);
            writer.await.expect("join")
        }
        Sink::Discard => {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("chunk");
                if knobs.hash {
                    hasher.update(&chunk);
                }
                bytes += chunk.len() as u64;
                chunks += 1;
            }
            hex(&hasher.finalize())
        }
    };
    if knobs.check {
        let owned = path.to_path_buf();
        tokio::task::spawn_blocking(move || planx::vault::check_snapshot_archive(&owned))
            .await
            .expect("join")
            .expect("archive");
    }
    (sha256, bytes, chunks)
}

/// A blocking thread that hashes and writes what it is sent (at most 16 chunks in flight), then
/// flushes, optionally fsyncs, and answers with the SHA-256.
fn spawn_writer<B: AsRef<[u8]> + Send + 'static>(
    path: &Path,
    knobs: SaveKnobs,
) -> (
    tokio::sync::mpsc::Sender<B>,
    tokio::task::JoinHandle<String>,
) {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create");
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<B>(16);
    let writer = tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        while let Some(chunk) = receiver.blocking_recv() {
            if knobs.hash {
                hasher.update(chunk.as_ref());
            }
            out.write_all(chunk.as_ref()).expect("write");
        }
        let file = out.into_inner().expect("flush");
        if knobs.sync {
            file.sync_all().expect("sync");
        }
        hex(&hasher.finalize())
    });
    (sender, writer)
}

/// How the scratch restore checks the file first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PreHash {
    None,
    /// `planx::vault::file_sha256`: `tokio::fs::File`, 256 KiB reads.
    Planx,
    /// `std::fs::File` with 1 MiB reads on a blocking thread.
    Blocking,
}

/// What the scratch restore does: `restore-[hash|fasthash]-CHUNK_KIB[-length]`.
#[derive(Clone, Copy)]
struct RestoreKnobs {
    hash: PreHash,
    chunk: usize,
    length: bool,
}

impl RestoreKnobs {
    fn parse(mode: &str) -> RestoreKnobs {
        let chunk_kib: usize = mode
            .split('-')
            .find_map(|part| part.parse().ok())
            .expect("a chunk size in KiB");
        let hash = if mode.contains("fasthash") {
            PreHash::Blocking
        } else if mode.contains("hash") {
            PreHash::Planx
        } else {
            PreHash::None
        };
        RestoreKnobs {
            hash,
            chunk: chunk_kib * 1024,
            length: mode.contains("length"),
        }
    }
}

/// A scratch copy of `Vault::snapshot_restore_force` with the up-front hash done one of several
/// ways or not at all, the read chunk size chosen and, optionally, a `Content-Length` instead of
/// a chunked body.
async fn scratch_restore(
    address: &str,
    token: &Secret,
    path: &Path,
    expected: &str,
    knobs: RestoreKnobs,
) {
    let actual = match knobs.hash {
        PreHash::None => None,
        PreHash::Planx => Some(planx::vault::file_sha256(path).await.expect("hash")),
        PreHash::Blocking => {
            let owned = path.to_path_buf();
            Some(
                tokio::task::spawn_blocking(move || blocking_sha256(&owned))
                    .await
                    .expect("join")
                    .expect("hash"),
            )
        }
    };
    if let Some(actual) = actual {
        assert_eq!(actual, expected, "the file changed");
    }
    let file = tokio::fs::File::open(path).await.expect("open");
    let length = file.metadata().await.expect("metadata").len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        knobs.chunk,
    ));
    let mut request = client()
        .post(format!("{address}/v1/sys/storage/raft/snapshot-force"))
        .header("X-Vault-Token", token.expose())
        .header("Content-Type", "application/octet-stream");
    if knobs.length {
        request = request.header("Content-Length", length);
    }
    let response = request
        .body(body)
        .send()
        .await
        .expect("snapshot-force answers");
    let status = response.status().as_u16();
    assert!(
        matches!(status, 200 | 204),
        "snapshot-force status {status}"
    );
}

/// SHA-256 of a file with plain blocking 1 MiB reads.
fn blocking_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The client `Vault::new` builds.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .tls_backend_rustls()
        .build()
        .expect("client")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The parent: the server, the data, the runs, the tables.

/// One finished transfer: its duration, the snapshot's size, and the child's peak RSS if any.
struct Run {
    seconds: f64,
    bytes: u64,
    rss_kb: Option<u64>,
    sha256: String,
    /// A scratch save: how many chunks the response stream yielded.
    chunks: u64,
    /// After a restore: how long the node took to come back, active, with the snapshot's data.
    settled: f64,
}

impl Run {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / MB / self.seconds
    }
}

/// The server, its keys, and where the runs put their files.
struct Bench {
    runtime: tokio::runtime::Runtime,
    node: common::BaoNode,
    token: String,
    key: String,
    header: PathBuf,
    dir: PathBuf,
    http: reqwest::Client,
    marker: u64,
    time_curl_rss: bool,
}

fn bench() {
    let started = Instant::now();
    planx::vault::install_crypto_provider();
    let sizes: Vec<u64> = std::env::var("PLANX_BENCH_SIZES_MB")
        .unwrap_or_else(|_| "25,110".into())
        .split(',')
        .map(|s| s.trim().parse().expect("PLANX_BENCH_SIZES_MB: sizes in MB"))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let node = common::BaoNode::start(IP);
    let address = node.address.clone();
    let vault = Vault::new(&address, &[]).expect("client");
    let init = runtime.block_on(async {
        let init = common::init(&address).await;
        let status = vault
            .unseal(&Secret::new(init.key.clone()), false)
            .await
            .expect("unseal");
        assert!(!status.sealed);
        common::eventually("the node to lead", Duration::from_secs(60), || async {
            vault.leader().await.is_ok_and(|l| l.is_self)
        })
        .await;
        let (status, body) = common::call(
            &address,
            &init.root_token,
            reqwest::Method::POST,
            "sys/mounts/kv",
            Some(serde_json::json!({"type": "kv", "options": {"version": "1"}})),
        )
        .await;
        assert_eq!(status, 204, "mount kv: {body}");
        init
    });
    let dir = node.dir().join("snapshots");
    std::fs::create_dir_all(&dir).expect("snapshot dir");
    let header = node.dir().join("token.header");
    write_private(
        &header,
        format!("X-Vault-Token: {}\n", init.root_token).as_bytes(),
    );
    let time_curl_rss = Path::new("/usr/bin/time").exists();
    let mut bench = Bench {
        runtime,
        node,
        token: init.root_token,
        key: init.key,
        header,
        dir,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        marker: 0,
        time_curl_rss,
    };
    println!(
        "OpenBao {} at {address}; planx {} (release profile); curl: {}",
        bench.server_version(),
        env!("CARGO_PKG_VERSION"),
        curl_version()
    );

    let mut rows = Vec::new();
    let mut seed = 0x5eed_u64 ^ u64::from(std::process::id());
    let mut written = 0usize;
    for &target in &sizes {
        let fill = Instant::now();
        let size = bench.fill_to(target * 1_000_000, &mut seed, &mut written);
        println!(
            "filled to a {:.1} MB snapshot ({written} values of {VALUE_CHARS} base64 chars) in {:.1} s",
            size as f64 / MB,
            fill.elapsed().as_secs_f64()
        );
        rows.push(bench.measure(&format!("{target}")));
    }

    println!();
    println!(
        "## planx vs curl, raft snapshot over loopback HTTP (median of {RUNS} runs; MB = 10^6 bytes)"
    );
    println!();
    println!(
        "| size MB | planx save MB/s | curl save MB/s | ratio | planx restore MB/s | curl restore MB/s | ratio | planx peak RSS save/restore MB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2} | {:.1} / {:.1} |",
            row.bytes as f64 / MB,
            row.planx_save,
            row.curl_save,
            row.planx_save / row.curl_save,
            row.planx_restore,
            row.curl_restore,
            row.planx_restore / row.curl_restore,
            row.rss_save_kb as f64 * 1024.0 / MB,
            row.rss_restore_kb as f64 * 1024.0 / MB,
        );
    }
    if bench.time_curl_rss {
        println!();
        println!("curl peak RSS save/restore MB (max of runs, /usr/bin/time):");
        for row in &rows {
            println!(
                "  {:.1} MB snapshot: {:.1} / {:.1}",
                row.bytes as f64 / MB,
                row.curl_rss_save_kb as f64 * 1024.0 / MB,
                row.curl_rss_restore_kb as f64 * 1024.0 / MB,
            );
        }
    }

    if std::env::var_os("PLANX_BENCH_NO_BREAKDOWN").is_none() {
        let largest = sizes.iter().max().expect("a size");
        bench.breakdown(&format!("{largest}"));
    }
    println!();
    println!("total wall time: {:.1} s", started.elapsed().as_secs_f64());
}

/// One row of the table.
struct Row {
    bytes: u64,
    planx_save: f64,
    curl_save: f64,
    planx_restore: f64,
    curl_restore: f64,
    rss_save_kb: u64,
    rss_restore_kb: u64,
    curl_rss_save_kb: u64,
    curl_rss_restore_kb: u64,
}

impl Bench {
    fn address(&self) -> &str {
        &self.node.address
    }

    fn server_version(&self) -> String {
        self.runtime.block_on(async {
            let vault = Vault::new(self.address(), &[]).expect("client");
            vault.health().await.map(|h| h.version).unwrap_or_default()
        })
    }

    /// Write random base64 values until a snapshot is at least `target` bytes; its size.
    fn fill_to(&self, target: u64, seed: &mut u64, written: &mut usize) -> u64 {
        loop {
            let size = self.snapshot_size();
            if size >= target {
                return size;
            }
            let missing = (target - size).div_ceil(VALUE_CHARS as u64) as usize;
            self.runtime.block_on(async {
                for _ in 0..missing {
                    let value = random_base64(seed, VALUE_CHARS);
                    let (status, body) = common::call(
                        self.address(),
                        &self.token,
                        reqwest::Method::PUT,
                        &format!("kv/blob/{written}"),
                        Some(serde_json::json!({ "value": value })),
                    )
                    .await;
                    assert_eq!(status, 204, "write kv/blob/{written}: {body}");
                    *written += 1;
                }
            });
        }
    }

    /// The size of a snapshot taken now, counted as it streams by.
    fn snapshot_size(&self) -> u64 {
        self.runtime.block_on(async {
            let response = self
                .http
                .get(format!("{}/v1/sys/storage/raft/snapshot", self.address()))
                .header("X-Vault-Token", &self.token)
                .timeout(Duration::from_secs(300))
                .send()
                .await
                .expect("snapshot answers");
            assert_eq!(response.status().as_u16(), 200);
            let mut stream = response.bytes_stream();
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                bytes += chunk.expect("chunk").len() as u64;
            }
            bytes
        })
    }

    /// Write a new marker value; a restore must bring back the one in the snapshot.
    fn set_marker(&mut self, value: &str) {
        self.runtime.block_on(async {
            let (status, body) = common::call(
                self.address(),
                &self.token,
                reqwest::Method::PUT,
                "kv/marker",
                Some(serde_json::json!({ "value": value })),
            )
            .await;
            assert_eq!(status, 204, "write kv/marker: {body}");
        });
    }

    fn dirty_marker(&mut self) {
        self.marker += 1;
        let value = format!("dirty-{}", self.marker);
        self.set_marker(&value);
    }

    /// Wait until the restore has been applied (`kv/marker` reads `expected` again) and the node
    /// is unsealed and active (`sys/health` 200); unseal it if it sealed itself.
    fn wait_restored(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(300);
        self.runtime.block_on(async {
            loop {
                assert!(
                    Instant::now() < deadline,
                    "the node did not come back after a restore: {}",
                    self.node.log()
                );
                let health = self
                    .http
                    .get(format!("{}/v1/sys/health", self.address()))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                match health {
                    Ok(200) => {
                        let (status, body) = common::call(
                            self.address(),
                            &self.token,
                            reqwest::Method::GET,
                            "kv/marker",
                            None,
                        )
                        .await;
                        if status == 200 && body["data"]["value"] == expected {
                            return;
                        }
                    }
                    Ok(503) => {
                        let vault = Vault::new(self.address(), &[]).expect("client");
                        let _ = vault.unseal(&Secret::new(self.key.clone()), false).await;
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    /// planx save/restore in a child process, timed from here.
    fn planx(&self, mode: &str, path: &Path, sha256: Option<&str>) -> Run {
        let mut command = Command::new(std::env::current_exe().expect("this binary"));
        command
            .arg("--child")
            .arg(mode)
            .arg(self.address())
            .arg(path)
            .args(sha256)
            .env(TOKEN_ENV, &self.token)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let start = Instant::now();
        let output = command.output().expect("the child runs");
        let seconds = start.elapsed().as_secs_f64();
        assert!(output.status.success(), "planx {mode} child failed");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let field = |name: &str| {
            stdout
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_default()
                .to_string()
        };
        // A save reports what it received (a discarding one writes no file); a restore sent the file.
        let bytes = field("bytes")
            .parse()
            .ok()
            .filter(|&b| b > 0)
            .unwrap_or_else(|| std::fs::metadata(path).expect("the snapshot file").len());
        Run {
            seconds,
            bytes,
            rss_kb: field("vmhwm_kb").parse().ok(),
            sha256: field("sha256"),
            chunks: field("chunks").parse().unwrap_or(0),
            settled: 0.0,
        }
    }

    /// `curl -sS -o FILE -H @header URL`.
    fn curl_save(&self, path: &Path) -> Run {
        let url = format!("{}/v1/sys/storage/raft/snapshot", self.address());
        let mut args = vec!["-sS".into(), "-o".into(), path.display().to_string()];
        args.extend(self.curl_common());
        args.push(url);
        let (seconds, code, rss_kb) = self.curl(&args);
        assert_eq!(code, "200", "curl save");
        Run {
            seconds,
            bytes: std::fs::metadata(path).expect("curl's snapshot").len(),
            rss_kb,
            sha256: String::new(),
            chunks: 0,
            settled: 0.0,
        }
    }

    /// `curl -sS --data-binary @FILE -H 'Content-Type: application/octet-stream' -H @header URL`.
    fn curl_restore(&self, path: &Path) -> Run {
        let url = format!("{}/v1/sys/storage/raft/snapshot-force", self.address());
        let mut args = vec![
            "-sS".into(),
            "-o".into(),
            "/dev/null".into(),
            "--data-binary".into(),
            format!("@{}", path.display()),
            "-H".into(),
            "Content-Type: application/octet-stream".into(),
        ];
        args.extend(self.curl_common());
        args.push(url);
        let (seconds, code, rss_kb) = self.curl(&args);
        assert!(code == "200" || code == "204", "curl restore: HTTP {code}");
        Run {
            seconds,
            bytes: std::fs::metadata(path).expect("the snapshot").len(),
            rss_kb,
            sha256: String::new(),
            chunks: 0,
            settled: 0.0,
        }
    }

    fn curl_common(&self) -> Vec<String> {
        vec![
            "-H".into(),
            format!("@{}", self.header.display()),
            "-w".into(),
            "%{http_code}".into(),
        ]
    }

    /// Run curl (under `/usr/bin/time` for its peak RSS when there is one), timed from here.
    fn curl(&self, args: &[String]) -> (f64, String, Option<u64>) {
        let rss_file = self.dir.join("curl.rss");
        let mut command = if self.time_curl_rss {
            let mut command = Command::new("/usr/bin/time");
            command
                .arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(&rss_file)
                .arg("curl");
            command
        } else {
            Command::new("curl")
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let start = Instant::now();
        let output = command.output().expect("curl runs");
        let seconds = start.elapsed().as_secs_f64();
        assert!(output.status.success(), "curl failed");
        let rss_kb = std::fs::read_to_string(&rss_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        (
            seconds,
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
            rss_kb,
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    /// Restore with `restore`, then wait for the node to be back with the snapshot's data.
    fn restore(&mut self, snapshot_marker: &str, restore: impl FnOnce(&Self) -> Run) -> Run {
        self.dirty_marker();
        let mut run = restore(self);
        let start = Instant::now();
        self.wait_restored(snapshot_marker);
        run.settled = start.elapsed().as_secs_f64();
        run
    }

    /// Three rounds of: planx save, curl save, planx restore, curl restore.
    fn measure(&mut self, label: &str) -> Row {
        let marker = format!("snapshot-{label}");
        self.set_marker(&marker);
        let (mut ps, mut cs, mut pr, mut cr) = (vec![], vec![], vec![], vec![]);
        for run in 0..RUNS {
            let planx_file = self.path(&format!("planx-{label}-{run}.snap"));
            let curl_file = self.path(&format!("curl-{label}-{run}.snap"));
            let save = self.planx("save", &planx_file, None);
            let sha256 = save.sha256.clone();
            ps.push(save);
            cs.push(self.curl_save(&curl_file));
            pr.push(self.restore(&marker, |b| b.planx("restore", &planx_file, Some(&sha256))));
            cr.push(self.restore(&marker, |b| b.curl_restore(&curl_file)));
            let _ = std::fs::remove_file(&planx_file);
            let _ = std::fs::remove_file(&curl_file);
            println!(
                "  {label} MB run {}: save planx {:.2} s / curl {:.2} s; restore planx {:.2} s / curl {:.2} s (back active after {:.1} s / {:.1} s)",
                run + 1,
                ps[run].seconds,
                cs[run].seconds,
                pr[run].seconds,
                cr[run].seconds,
                pr[run].settled,
                cr[run].settled,
            );
        }
        let max_rss = |runs: &[Run]| runs.iter().filter_map(|r| r.rss_kb).max().unwrap_or(0);
        Row {
            bytes: ps[0].bytes,
            planx_save: median(&ps),
            curl_save: median(&cs),
            planx_restore: median(&pr),
            curl_restore: median(&cr),
            rss_save_kb: max_rss(&ps),
            rss_restore_kb: max_rss(&pr),
            curl_rss_save_kb: max_rss(&cs),
            curl_rss_restore_kb: max_rss(&cr),
        }
    }

    /// Where planx's time goes, at one size: the steps alone, then scratch variants of the path.
    fn breakdown(&mut self, label: &str) {
        let marker = format!("snapshot-{label}");
        self.set_marker(&marker);
        println!();
        println!("## Breakdown at the {label} MB snapshot (median of {RUNS} runs)");
        println!();

        // The steps alone, on a saved file (in the page cache, as it is right after a save).
        let file = self.path("steps.snap");
        let saved = self.planx("save", &file, None);
        let bytes = saved.bytes as f64;
        let step = |f: &dyn Fn()| {
            let mut runs: Vec<f64> = (0..RUNS)
                .map(|_| {
                    let start = Instant::now();
                    f();
                    start.elapsed().as_secs_f64()
                })
                .collect();
            runs.sort_by(f64::total_cmp);
            runs[RUNS / 2]
        };
        let contents = std::fs::read(&file).expect("read the snapshot");
        let memory = step(&|| {
            std::hint::black_box(Sha256::digest(&contents));
        });
        drop(contents);
        let planx_hash = step(&|| {
            self.runtime
                .block_on(planx::vault::file_sha256(&file))
                .expect("hash");
        });
        let blocking_hash = step(&|| {
            blocking_sha256(&file).expect("hash");
        });
        let check = step(&|| planx::vault::check_snapshot_archive(&file).expect("archive"));
        let copy = self.path("steps-copy.snap");
        let mut syncs = Vec::new();
        for _ in 0..RUNS {
            let _ = std::fs::remove_file(&copy);
            std::fs::copy(&file, &copy).expect("copy");
            let start = Instant::now();
            std::fs::File::open(&copy)
                .and_then(|f| f.sync_all())
                .expect("sync");
            syncs.push(start.elapsed().as_secs_f64());
        }
        syncs.sort_by(f64::total_cmp);
        let fsync = syncs[RUNS / 2];
        let _ = std::fs::remove_file(&copy);
        println!(
            "steps alone on the {:.1} MB file (page cache warm):",
            bytes / MB
        );
        for (what, seconds) in [
            ("SHA-256 of the bytes in memory (sha2 crate)", memory),
            (
                "file_sha256 (restore's pre-check; tokio File, 256 KiB)",
                planx_hash,
            ),
            ("SHA-256, std File, 1 MiB reads", blocking_hash),
            ("check_snapshot_archive (save's post-check)", check),
            ("fsync of a freshly written copy", fsync),
        ] {
            println!(
                "  {what:<56} {seconds:>6.3} s  ({:>5.0} MB/s)",
                bytes / MB / seconds
            );
        }
        let _ = std::fs::remove_file(&file);

        // Save: planx itself, scratch copies with one thing changed each, curl. Each a child.
        println!();
        println!("| save variant | MB/s | x curl | chunks (mean KiB) | peak RSS MB |");
        println!("|---|---:|---:|---:|---:|");
        let save_modes = [
            ("save", "planx snapshot_save"),
            (
                "save-sync-check",
                "scratch copy of it (tokio File write per chunk, hash, fsync, archive check)",
            ),
            ("save-check", "  without the fsync"),
            ("save-sync", "  without the archive check"),
            ("save-bare", "  without either"),
            ("save-bare-nohash", "  without either, no hash"),
            ("save-discard", "  no file at all: stream + hash"),
            (
                "save-discard-nohash",
                "  no file, no hash: the stream alone",
            ),
            (
                "save-buf-sync-check",
                "proposed: 1 MiB BufWriter round the tokio File (hash, fsync, check)",
            ),
            (
                "save-pipe-sync-check",
                "proposed alt: blocking writer thread hashes + writes (fsync, check)",
            ),
        ];
        let curl_save: Vec<Run> = (0..RUNS)
            .map(|run| {
                let path = self.path(&format!("curl-b-{run}.snap"));
                let result = self.curl_save(&path);
                let _ = std::fs::remove_file(&path);
                result
            })
            .collect();
        let curl = median(&curl_save);
        for (mode, what) in save_modes {
            let runs: Vec<Run> = (0..RUNS)
                .map(|run| {
                    let path = self.path(&format!("{mode}-{run}.snap"));
                    let result = self.planx(mode, &path, None);
                    let _ = std::fs::remove_file(&path);
                    result
                })
                .collect();
            self.variant_row(what, &runs, curl);
        }
        self.variant_row("curl -o FILE", &curl_save, curl);

        // Restore: scratch copies of snapshot_restore_force, all from one saved file.
        let file = self.path("restore-source.snap");
        let saved = self.planx("save", &file, None);
        let sha256 = saved.sha256.clone();
        println!();
        println!("| restore variant | MB/s | x curl | | peak RSS MB |");
        println!("|---|---:|---:|---:|---:|");
        let curl_restore: Vec<Run> = (0..RUNS)
            .map(|_| self.restore(&marker, |b| b.curl_restore(&file)))
            .collect();
        let curl = median(&curl_restore);
        let restore_modes = [
            ("restore", "planx snapshot_restore_force"),
            (
                "restore-hash-4",
                "scratch copy of it (file_sha256 first, then 4 KiB ReaderStream reads)",
            ),
            ("restore-4", "  without the up-front hash"),
            ("restore-hash-256", "  256 KiB reads"),
            ("restore-hash-1024", "  1 MiB reads"),
            ("restore-1024", "  1 MiB reads, no hash"),
            (
                "restore-fasthash-1024",
                "proposed: hash with std File 1 MiB reads on a blocking thread, 1 MiB reads",
            ),
            ("restore-fasthash-1024-length", "  and a Content-Length"),
        ];
        for (mode, what) in restore_modes {
            let runs: Vec<Run> = (0..RUNS)
                .map(|_| self.restore(&marker, |b| b.planx(mode, &file, Some(&sha256))))
                .collect();
            self.variant_row(what, &runs, curl);
        }
        self.variant_row(
            "curl --data-binary @FILE (reads the whole file into memory first)",
            &curl_restore,
            curl,
        );
        let _ = std::fs::remove_file(&file);
    }

    fn variant_row(&self, what: &str, runs: &[Run], curl: f64) {
        let rate = median(runs);
        let rss = runs.iter().filter_map(|r| r.rss_kb).max();
        let chunks = runs.iter().map(|r| r.chunks).max().unwrap_or(0);
        println!(
            "| {what} | {rate:.1} | {:.2} | {} | {} |",
            rate / curl,
            if chunks > 0 {
                format!(
                    "{chunks} ({:.1})",
                    runs[0].bytes as f64 / chunks as f64 / 1024.0
                )
            } else {
                String::new()
            },
            rss.map(|kb| format!("{:.1}", kb as f64 * 1024.0 / MB))
                .unwrap_or_else(|| "-".into())
        );
    }
}

/// Median throughput of the runs, MB/s.
fn median(runs: &[Run]) -> f64 {
    let mut rates: Vec<f64> = runs.iter().map(Run::mb_per_s).collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// `chars` characters of base64 of random bytes (every character carries six random bits).
fn random_base64(state: &mut u64, chars: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(chars + 10);
    while out.len() < chars {
        // splitmix64
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        for i in 0..10 {
            out.push(ALPHABET[((z >> (6 * i)) & 63) as usize]);
        }
    }
    out.truncate(chars);
    String::from_utf8(out).expect("ASCII")
}

fn write_private(path: &Path, contents: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .expect("header file");
}

fn curl_version() -> String {
    Command::new("curl")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "missing".into())
}
