//! Snapshot transfer benchmark: planx's streaming raft-snapshot save and restore versus curl doing
//! the same two transfers against the same real OpenBao server, at a small and a large snapshot;
//! prints throughput, the planx/curl ratio and planx's peak RSS (a table, never an assertion).
//! Run with `cargo bench -p planx --bench snapshot`.
//!
//! One single-node raft OpenBao runs on a loopback address (stopped by a drop guard, even on a
//! panic). It is filled with random base64 in a kv-v1 mount, ~700 KB a value (below raft's 1 MiB
//! entry limit), until a snapshot reaches each target size (`PLANX_BENCH_SIZES_MB`, default
//! `25,110`). Each planx transfer runs in a child process (this binary re-executed with
//! `--child`, the token in `PLANX_BENCH_TOKEN`, never argv), so the peak RSS it reports
//! (`VmHWM`) belongs to that transfer alone; the parent times it, process start included. curl
//! gets the token from a 0600 header file. After each restore the parent waits until a marker
//! written after the save reads back as it was in the snapshot and `sys/health` answers 200.
//! Every transfer starts on a quiet server (less than a clock tick of its CPU in 200 ms), every
//! save after one untimed snapshot read, and planx and curl take turns going first; every
//! figure is the median of five runs.
//!
//! Under the tables: `curl -o FILE && sync FILE` (planx syncs what it saves) and `&& sha256sum
//! FILE` as like-for-like comparisons, and where a save's time goes: seconds until the first
//! data arrived (curl's `time_starttransfer`, planx's first batch), CPU seconds of the client
//! (`/proc/PID/stat` of the child, `/usr/bin/time` of curl) and of the server while it ran.
//!
//! `PLANX_BENCH_PIN=1` puts the server on the first CPU and the clients (planx's child, curl) on
//! the last (`taskset`), so a client's work never takes the core the server produces the
//! snapshot on. Under the tables, the seconds SHA-256 alone takes over the snapshot in memory:
//! work planx's save must do and `curl -o` does not.
//!
//! What the breakdowns found. Save: unbuffered per-chunk writes gave 0.41-0.55x curl; a 1 MiB
//! buffer 0.59-0.72x; then receiving on a multi-threaded runtime alone (no hash, no write) took
//! 0.29 s for 110 MB against curl's whole 0.24 s: every network chunk was handed between the
//! connection's task and the reader on another worker. The save then received on a thread with
//! a single-threaded runtime of its own (receiving alone: 0.215 s) and handed 1 MiB batches to
//! a writer thread (SHA-256, vectored write, writeback started every 8 MiB without waiting, so
//! the final sync takes 2-5 ms where curl's `sync FILE` takes 0.06-0.11 s) and a checker
//! thread. Until this bench took turns, planx's save always ran right after a restore and
//! curl's never did, into the writeback of the server's freshly restored raft database:
//! 0.70-0.81x. With a `sync` and a quiet server before every save, and turns taken, those three
//! threads ran at 0.84-0.95x of `curl -o` on the two shared cores (0.95x pinned apart,
//! `PLANX_BENCH_PIN=1`): both wait the same 0.05-0.07 s for the server to start sending (it
//! walks the whole snapshot once before the first byte), and what was left was CPU, 0.15-0.18 s
//! of it per 110 MB against curl's 0.07 s while the server needs one of the two cores. SHA-256
//! is 0.06-0.10 s of that (1.1-1.8 GB/s with SHA-NI, the same as `ring` and OpenSSL on data in
//! cache) and cannot go; the handovers could. The save now does everything on its one thread,
//! each chunk hashed, queued for the write and walked as it arrives, while the kernel keeps
//! receiving into the socket: 0.12-0.14 s of CPU and 0.94-0.98x of `curl -o`, 1.2x of `curl -o
//! && sync`. Reporting progress per chunk instead of per MiB woke the caller's runtime on every
//! chunk and cost 0.83-0.87x; building a client loaded the system's CA roots again (2 ms each,
//! two per save) until the TLS settings were shared (31 us). Restore: 4 KiB reads gave 0.27x;
//! 256 KiB reads with the hash taken first 0.91-1.06x; one pass that hashes and checks the file
//! as it is sent (its tail held back until both pass) 1.25-1.48x: `curl --data-binary @FILE`
//! reads the whole file into memory first.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use planx::adapters::vault::Vault;
use planx::secrets::Secret;

const TOKEN_ENV: &str = "PLANX_BENCH_TOKEN";
const IP: &str = "127.0.91.1";
const VALUE_CHARS: usize = 700_000;
const RUNS: usize = 5;
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

/// `--child save|restore ADDRESS PATH [SHA256]`; prints `sha256=… bytes=… vmhwm_kb=…`.
fn child(args: &[String]) {
    let [mode, address, path, rest @ ..] = args else {
        panic!("usage: --child MODE ADDRESS PATH [SHA256]");
    };
    let started = Instant::now();
    let path = Path::new(path);
    let token = Secret::new(std::env::var(TOKEN_ENV).expect("the token in PLANX_BENCH_TOKEN"));
    let mut first_byte = None;
    planx::adapters::vault::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (sha256, bytes) = runtime.block_on(async {
        let vault = Vault::new(address, &[]).expect("client");
        match mode.as_str() {
            "save" => {
                let file = vault
                    .snapshot_save(&token, path, |bytes| {
                        if bytes > 0 && first_byte.is_none() {
                            first_byte = Some(started.elapsed().as_secs_f64());
                        }
                    })
                    .await
                    .expect("planx snapshot save");
                (file.sha256, file.bytes)
            }
            "restore" => {
                let expected = rest.first().expect("the SHA-256 to restore");
                vault
                    .snapshot_restore_force(&token, path, Some(expected), |_| {})
                    .await
                    .expect("planx snapshot restore");
                (String::new(), 0)
            }
            other => panic!("unknown child mode {other}"),
        }
    });
    println!(
        "sha256={sha256} bytes={bytes} vmhwm_kb={} cpu_s={} first_byte_s={}",
        vmhwm_kb(),
        cpu_seconds("self"),
        first_byte.unwrap_or(0.0)
    );
}

/// User plus system CPU time of a process (`self` or a pid), every thread, from
/// `/proc/PID/stat` (clock ticks of 10 ms, Linux's `USER_HZ`).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
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

// ---------------------------------------------------------------------------------------------
// The parent: the server, the data, the runs, the tables.

/// One finished transfer: its duration, the snapshot's size, and the child's peak RSS if any.
struct Run {
    seconds: f64,
    bytes: u64,
    rss_kb: Option<u64>,
    /// CPU seconds of the client, and of the server while the transfer ran.
    cpu: f64,
    server_cpu: f64,
    sha256: String,
    /// After a restore: how long the node took to come back, active, with the snapshot's data.
    settled: f64,
    /// A save: seconds from the client's start until its first data arrived (curl's
    /// `time_starttransfer`; planx's first batch, at most 1 MiB).
    first_byte: f64,
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
    planx::adapters::vault::install_crypto_provider();
    let sizes: Vec<u64> = std::env::var("PLANX_BENCH_SIZES_MB")
        .unwrap_or_else(|_| "25,110".into())
        .split(',')
        .map(|s| s.trim().parse().expect("PLANX_BENCH_SIZES_MB: sizes in MB"))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Counted before any pinning, which narrows what this process may use.
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let node = common::BaoNode::start(IP);
    if std::env::var_os("PLANX_BENCH_PIN").is_some_and(|v| v == "1") {
        pin_server_and_clients(node.pid());
    }
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
    println!();
    println!(
        "like for like with planx save, which syncs what it writes: `curl -o FILE && sync FILE`, and with the hash too: `&& sha256sum FILE` (median of {RUNS}):"
    );
    for row in &rows {
        println!(
            "  {:.1} MB snapshot: curl -o && sync {:.1} MB/s (planx save at {:.2}x of it); && sha256sum {:.1} MB/s (planx save at {:.2}x of it)",
            row.bytes as f64 / MB,
            row.curl_synced_save,
            row.planx_save / row.curl_synced_save,
            row.curl_sha256sum_save,
            row.planx_save / row.curl_sha256sum_save,
        );
    }
    println!();
    println!(
        "where a save's time goes (median of {RUNS}; {} cores here): seconds until the first data arrived (the server preparing the snapshot), CPU seconds of the client and of the server while it ran, and the cores they kept busy together",
        cores
    );
    println!();
    println!(
        "| size MB | planx wall s | first data s | planx CPU s | server CPU s | cores busy | curl wall s | first data s | curl CPU s | server CPU s | cores busy |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let [planx_cpu, planx_server, curl_cpu, curl_server] = row.cpu;
        let [planx_wall, curl_wall] = row.seconds;
        let [planx_first, curl_first] = row.first_byte;
        println!(
            "| {:.1} | {planx_wall:.2} | {planx_first:.3} | {planx_cpu:.2} | {planx_server:.2} | {:.2} | {curl_wall:.2} | {curl_first:.3} | {curl_cpu:.2} | {curl_server:.2} | {:.2} |",
            row.bytes as f64 / MB,
            (planx_cpu + planx_server) / planx_wall,
            (curl_cpu + curl_server) / curl_wall,
        );
    }
    println!();
    println!(
        "SHA-256 alone (in memory, one core, median of {RUNS}): what planx's save computes and `curl -o` does not"
    );
    for row in &rows {
        println!(
            "  {:.1} MB snapshot: {:.3} s ({:.0} MB/s)",
            row.bytes as f64 / MB,
            row.hash_alone,
            row.bytes as f64 / MB / row.hash_alone,
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
    println!();
    println!("total wall time: {:.1} s", started.elapsed().as_secs_f64());
}

/// `PLANX_BENCH_PIN=1`: the server on the first CPU, this process and every client it starts
/// (planx's child, curl) on the last, so client and server never share a core.
fn pin_server_and_clients(server_pid: u32) {
    let last = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let pin = |cpu: usize, pid: u32| {
        let status = Command::new("taskset")
            .args([
                "--all-tasks",
                "--cpu-list",
                "--pid",
                &cpu.to_string(),
                &pid.to_string(),
            ])
            .stdout(Stdio::null())
            .status()
            .expect("taskset runs (util-linux)");
        assert!(status.success(), "taskset {cpu} {pid}");
    };
    pin(0, server_pid);
    pin(last, std::process::id());
    println!("pinned: server on CPU 0, planx and curl on CPU {last}");
}

/// Seconds to SHA-256 a saved snapshot already read into memory (the sha2 crate, as planx's
/// save uses), checked against the digest planx reported.
fn hash_in_memory(path: &Path, expected: &str) -> f64 {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("the saved snapshot reads back");
    let started = Instant::now();
    let mut hasher = sha2::Sha256::new();
    for chunk in bytes.chunks(1 << 20) {
        hasher.update(chunk);
    }
    let digest = hasher.finalize();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        planc::hex::encode(&digest),
        expected,
        "planx's digest of {path:?}"
    );
    seconds
}

/// One row of the table.
struct Row {
    bytes: u64,
    planx_save: f64,
    curl_save: f64,
    /// `curl -o FILE`, `sync FILE`, then `sha256sum FILE`, timed together.
    curl_sha256sum_save: f64,
    /// `curl -o FILE` then `sync FILE`: what planx's save does but the hash and the check.
    curl_synced_save: f64,
    /// Median CPU seconds: planx save, the server during it, curl save, the server during it.
    cpu: [f64; 4],
    /// Median wall seconds of a save: planx, curl.
    seconds: [f64; 2],
    /// Median seconds to a save's first data: planx, curl.
    first_byte: [f64; 2],
    /// Median seconds of SHA-256 over the snapshot already in memory, on one core: work a
    /// save must do and `curl -o` does not.
    hash_alone: f64,
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
        let server = self.server_cpu();
        let start = Instant::now();
        let output = command.output().expect("the child runs");
        let seconds = start.elapsed().as_secs_f64();
        let server_cpu = self.server_cpu() - server;
        assert!(output.status.success(), "planx {mode} child failed");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let field = |name: &str| {
            stdout
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_default()
                .to_string()
        };
        // A save reports what it received; a restore sent the file.
        let bytes = field("bytes")
            .parse()
            .ok()
            .filter(|&b| b > 0)
            .unwrap_or_else(|| std::fs::metadata(path).expect("the snapshot file").len());
        Run {
            seconds,
            bytes,
            rss_kb: field("vmhwm_kb").parse().ok(),
            cpu: field("cpu_s").parse().unwrap_or(0.0),
            server_cpu,
            sha256: field("sha256"),
            settled: 0.0,
            first_byte: field("first_byte_s").parse().unwrap_or(0.0),
        }
    }

    /// CPU seconds the server has used so far.
    fn server_cpu(&self) -> f64 {
        cpu_seconds(&self.node.pid().to_string())
    }

    /// `curl -sS -o FILE -H @header URL`.
    fn curl_save(&self, path: &Path) -> Run {
        let url = format!("{}/v1/sys/storage/raft/snapshot", self.address());
        let mut args = vec!["-sS".into(), "-o".into(), path.display().to_string()];
        args.extend(self.curl_common());
        args.push(url);
        let server = self.server_cpu();
        let (seconds, written, rss_kb, cpu) = self.curl(&args);
        let server_cpu = self.server_cpu() - server;
        let (code, first_byte) = written.split_once(' ').unwrap_or((&written, "0"));
        assert_eq!(code, "200", "curl save");
        Run {
            seconds,
            bytes: std::fs::metadata(path).expect("curl's snapshot").len(),
            rss_kb,
            cpu,
            server_cpu,
            sha256: String::new(),
            settled: 0.0,
            first_byte: first_byte.parse().unwrap_or(0.0),
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
        let (seconds, written, rss_kb, cpu) = self.curl(&args);
        let code = written.split_whitespace().next().unwrap_or_default();
        assert!(code == "200" || code == "204", "curl restore: HTTP {code}");
        Run {
            seconds,
            bytes: std::fs::metadata(path).expect("the snapshot").len(),
            rss_kb,
            cpu,
            server_cpu: 0.0,
            sha256: String::new(),
            settled: 0.0,
            first_byte: 0.0,
        }
    }

    /// `sha256sum FILE` right after curl saved it (page cache warm, as planx hashes as it
    /// writes); its duration.
    fn sha256sum(&self, path: &Path) -> f64 {
        let start = Instant::now();
        let status = Command::new("sha256sum")
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("sha256sum runs");
        let seconds = start.elapsed().as_secs_f64();
        assert!(status.success(), "sha256sum");
        seconds
    }

    fn curl_common(&self) -> Vec<String> {
        vec![
            "-H".into(),
            format!("@{}", self.header.display()),
            "-w".into(),
            "%{http_code} %{time_starttransfer}".into(),
        ]
    }

    /// `sync FILE` (an fsync of it) right after curl saved it, as planx syncs what it saves; its
    /// duration.
    fn sync(&self, path: &Path) -> f64 {
        let start = Instant::now();
        let status = Command::new("sync").arg(path).status().expect("sync runs");
        assert!(status.success(), "sync");
        start.elapsed().as_secs_f64()
    }

    /// Run curl (under `/usr/bin/time` for its peak RSS and CPU time when there is one), timed
    /// from here.
    fn curl(&self, args: &[String]) -> (f64, String, Option<u64>, f64) {
        let rss_file = self.dir.join("curl.rss");
        let mut command = if self.time_curl_rss {
            let mut command = Command::new("/usr/bin/time");
            command
                .arg("-f")
                .arg("%M %U %S")
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
        let measured = std::fs::read_to_string(&rss_file).unwrap_or_default();
        let mut fields = measured.split_whitespace();
        let rss_kb = fields.next().and_then(|s| s.parse().ok());
        let cpu = fields.filter_map(|s| s.parse::<f64>().ok()).sum();
        (
            seconds,
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
            rss_kb,
            cpu,
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
        self.wait_quiet();
        let mut run = restore(self);
        let start = Instant::now();
        self.wait_restored(snapshot_marker);
        run.settled = start.elapsed().as_secs_f64();
        run
    }

    /// `curl -o FILE` on a settled server, then `sync FILE`, then `sha256sum FILE`: each one's
    /// seconds.
    fn timed_curl_save(&self, path: &Path) -> (Run, f64, f64) {
        self.settle_for_a_save();
        let curl = self.curl_save(path);
        let synced = self.sync(path);
        let hashed = self.sha256sum(path);
        (curl, synced, hashed)
    }

    /// Every dirty page on the machine written out (`sync`), then a quiet server: the restore
    /// before leaves hundreds of MB (the server's new raft database) for the kernel to write
    /// back, and whichever save ran into that writeback came out 10-25% slower.
    fn settle_for_a_save(&self) {
        let status = Command::new("sync").status().expect("sync runs");
        assert!(status.success(), "sync");
        self.wait_quiet();
    }

    /// Wait (10 s at most) until the server spends less than one clock tick of CPU in 200 ms.
    fn wait_quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let before = self.server_cpu();
            std::thread::sleep(Duration::from_millis(200));
            if self.server_cpu() - before < 0.015 {
                return;
            }
        }
    }

    /// Five rounds of a planx save and a curl save (then `sync` and `sha256sum` of its file),
    /// then a planx restore and a curl restore; planx goes first in rounds 1, 3 and 5.
    fn measure(&mut self, label: &str) -> Row {
        let marker = format!("snapshot-{label}");
        self.set_marker(&marker);
        let (mut ps, mut cs, mut pr, mut cr) = (vec![], vec![], vec![], vec![]);
        let (mut chs, mut css, mut hashes) = (vec![], vec![], vec![]);
        for run in 0..RUNS {
            let planx_file = self.path(&format!("planx-{label}-{run}.snap"));
            let curl_file = self.path(&format!("curl-{label}-{run}.snap"));
            // Who goes first alternates, and each save starts on a quiet server: a save right
            // after a restore otherwise meets the server still settling it.
            let planx_first = run % 2 == 0;
            let mut curl_run = None;
            if !planx_first {
                curl_run = Some(self.timed_curl_save(&curl_file));
            }
            self.settle_for_a_save();
            let save = self.planx("save", &planx_file, None);
            let sha256 = save.sha256.clone();
            ps.push(save);
            hashes.push(hash_in_memory(&planx_file, &sha256));
            let (curl, synced, hashed) =
                curl_run.unwrap_or_else(|| self.timed_curl_save(&curl_file));
            css.push(Run {
                seconds: curl.seconds + synced,
                bytes: curl.bytes,
                rss_kb: None,
                cpu: 0.0,
                server_cpu: 0.0,
                sha256: String::new(),
                settled: 0.0,
                first_byte: 0.0,
            });
            chs.push(Run {
                seconds: curl.seconds + synced + hashed,
                bytes: curl.bytes,
                rss_kb: None,
                cpu: 0.0,
                server_cpu: 0.0,
                sha256: String::new(),
                settled: 0.0,
                first_byte: 0.0,
            });
            cs.push(curl);
            if planx_first {
                pr.push(self.restore(&marker, |b| b.planx("restore", &planx_file, Some(&sha256))));
                cr.push(self.restore(&marker, |b| b.curl_restore(&curl_file)));
            } else {
                cr.push(self.restore(&marker, |b| b.curl_restore(&curl_file)));
                pr.push(self.restore(&marker, |b| b.planx("restore", &planx_file, Some(&sha256))));
            }
            let _ = std::fs::remove_file(&planx_file);
            let _ = std::fs::remove_file(&curl_file);
            println!(
                "  {label} MB run {} ({} first): save planx {:.2} s (first data {:.3} s, CPU {:.2} s, server {:.2} s) / curl {:.2} s (first data {:.3} s, CPU {:.2} s, server {:.2} s; + sync {:.2} s, + sha256sum {:.2} s); restore planx {:.2} s / curl {:.2} s (back active after {:.1} s / {:.1} s)",
                run + 1,
                if run % 2 == 0 { "planx" } else { "curl" },
                ps[run].seconds,
                ps[run].first_byte,
                ps[run].cpu,
                ps[run].server_cpu,
                cs[run].seconds,
                cs[run].first_byte,
                cs[run].cpu,
                cs[run].server_cpu,
                css[run].seconds - cs[run].seconds,
                chs[run].seconds - css[run].seconds,
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
            curl_sha256sum_save: median(&chs),
            curl_synced_save: median(&css),
            cpu: [
                middle(ps.iter().map(|r| r.cpu)),
                middle(ps.iter().map(|r| r.server_cpu)),
                middle(cs.iter().map(|r| r.cpu)),
                middle(cs.iter().map(|r| r.server_cpu)),
            ],
            seconds: [
                middle(ps.iter().map(|r| r.seconds)),
                middle(cs.iter().map(|r| r.seconds)),
            ],
            first_byte: [
                middle(ps.iter().map(|r| r.first_byte)),
                middle(cs.iter().map(|r| r.first_byte)),
            ],
            hash_alone: middle(hashes.into_iter()),
            planx_restore: median(&pr),
            curl_restore: median(&cr),
            rss_save_kb: max_rss(&ps),
            rss_restore_kb: max_rss(&pr),
            curl_rss_save_kb: max_rss(&cs),
            curl_rss_restore_kb: max_rss(&cr),
        }
    }
}

/// The median of some figures.
fn middle(figures: impl Iterator<Item = f64>) -> f64 {
    let mut figures: Vec<f64> = figures.collect();
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
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
