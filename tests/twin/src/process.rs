//! The operating-system processes a twin starts (the pods' `bao` and `sleep`, key services): each
//! is recorded by pid in memory and in a pid file, stopped with SIGTERM and then SIGKILL after a
//! bound, and every one still running is stopped when the twin stops. Children also get
//! `PR_SET_PDEATHSIG` (SIGKILL), so a twin that dies abruptly takes them along.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or `128 + signal` for a process killed by a signal (as kubelets report).
    pub code: i32,
    pub signal: Option<i32>,
}

impl Exit {
    fn from_status(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit { code, signal: None },
            (None, Some(signal)) => Exit {
                code: 128 + signal,
                signal: Some(signal),
            },
            (None, None) => Exit {
                code: -1,
                signal: None,
            },
        }
    }
}

struct Entry {
    name: String,
    child: Child,
}

/// Every process one twin started and has not yet seen end.
pub struct Processes {
    running: Mutex<HashMap<u32, Entry>>,
    pid_dir: PathBuf,
}

impl std::fmt::Debug for Processes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processes")
            .field("running", &self.list())
            .field("pid_dir", &self.pid_dir)
            .finish()
    }
}

/// What `twin down` and tests read from a pid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: u32,
    pub name: String,
    pub program: String,
}

impl Processes {
    /// A registry writing one pid file per process into `pid_dir` (created 0700).
    pub fn new(pid_dir: &Path) -> std::io::Result<Processes> {
        crate::twin::create_private_dir(pid_dir)?;
        Ok(Processes {
            running: Mutex::new(HashMap::new()),
            pid_dir: pid_dir.to_path_buf(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Entry>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts `command` with stdin closed and stdout and stderr appended to `log`, in the cgroup
    /// whose `cgroup.procs` is `group` (when given); records it under `name`. The process is not
    /// waited for.
    pub fn spawn(
        &self,
        name: &str,
        mut command: Command,
        log: &Path,
        group: Option<std::fs::File>,
    ) -> std::io::Result<u32> {
        use std::os::unix::process::CommandExt;
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log_file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(log)?
        };
        let program = command.get_program().to_string_lossy().into_owned();
        command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0);
        let group_fd = group.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl and
        // write (on a descriptor opened before the fork), which are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Writing 0 to a group's cgroup.procs moves the writer into it.
                if let Some(fd) = group_fd
                    && libc::write(fd, b"0\n".as_ptr().cast(), 2) != 2
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut running = self.lock();
        let child = command.spawn()?;
        drop(group);
        let pid = child.id();
        let record = json!({"pid": pid, "name": name, "program": program});
        let _ = crate::kubeconfig::write_private(
            &self.pid_dir.join(format!("{pid}.json")),
            &record.to_string(),
        );
        running.insert(
            pid,
            Entry {
                name: name.to_string(),
                child,
            },
        );
        Ok(pid)
    }

    /// `Some(exit)` once process `pid` has ended (it is then forgotten); `None` while it runs or
    /// when it is not one of ours.
    pub fn try_wait(&self, pid: u32) -> Option<Exit> {
        let mut running = self.lock();
        let entry = running.get_mut(&pid)?;
        match entry.child.try_wait() {
            Ok(Some(status)) => {
                running.remove(&pid);
                let _ = std::fs::remove_file(self.pid_dir.join(format!("{pid}.json")));
                Some(Exit::from_status(status))
            }
            Ok(None) => None,
            Err(_) => {
                running.remove(&pid);
                let _ = std::fs::remove_file(self.pid_dir.join(format!("{pid}.json")));
                Some(Exit {
                    code: -1,
                    signal: None,
                })
            }
        }
    }

    /// Whether `pid` is one of ours and still running.
    pub fn is_running(&self, pid: u32) -> bool {
        self.lock().contains_key(&pid) && self.try_wait(pid).is_none()
    }

    fn signal(&self, pid: u32, signal: i32) {
        if self.lock().contains_key(&pid) {
            // SAFETY: `pid` is a child we spawned and have not reaped, so it cannot be reused.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// Stops `pid`: SIGTERM, SIGKILL after `grace`; its exit (`None` if it was not ours).
    pub async fn stop(&self, pid: u32, grace: Duration) -> Option<Exit> {
        if !self.lock().contains_key(&pid) {
            return None;
        }
        self.signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(exit) = self.try_wait(pid) {
                return Some(exit);
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.signal(pid, libc::SIGKILL);
        loop {
            if let Some(exit) = self.try_wait(pid) {
                return Some(exit);
            }
            if !self.lock().contains_key(&pid) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every process still running: SIGTERM to all, SIGKILL to those left after `grace`.
    pub fn stop_all(&self, grace: Duration) {
        let pids: Vec<u32> = self.lock().keys().copied().collect();
        for pid in &pids {
            self.signal(*pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        let mut left: Vec<u32> = pids;
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|pid| self.try_wait(*pid).is_none());
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        for pid in &left {
            self.signal(*pid, libc::SIGKILL);
        }
        let kill_deadline = Instant::now() + Duration::from_secs(5);
        while !left.is_empty() && Instant::now() < kill_deadline {
            left.retain(|pid| self.try_wait(*pid).is_none());
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The processes still recorded as running: (pid, name).
    pub fn list(&self) -> Vec<(u32, String)> {
        let mut list: Vec<(u32, String)> = self
            .lock()
            .iter()
            .map(|(pid, entry)| (*pid, entry.name.clone()))
            .collect();
        list.sort();
        list
    }

    /// The directory holding the pid files.
    pub fn pid_dir(&self) -> &Path {
        &self.pid_dir
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all(Duration::from_secs(10));
    }
}

/// The pid files in `pid_dir`, for `twin down` in another process.
pub fn read_pid_records(pid_dir: &Path) -> Vec<PidRecord> {
    let Ok(entries) = std::fs::read_dir(pid_dir) else {
        return Vec::new();
    };
    let mut records: Vec<PidRecord> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|text| serde_json::from_str::<Value>(&text).ok())
        .filter_map(|record| {
            Some(PidRecord {
                pid: u32::try_from(record["pid"].as_u64()?).ok()?,
                name: record["name"].as_str()?.to_string(),
                program: record["program"].as_str()?.to_string(),
            })
        })
        .collect();
    records.sort_by_key(|record| record.pid);
    records
}

/// Whether `record` names a live (not zombie) process still running its recorded program: the
/// check `twin down` makes before signalling a pid it did not spawn itself.
pub fn is_live(record: &PidRecord) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", record.pid)) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", record.pid)) else {
        return false;
    };
    cmdline
        .split(|byte| *byte == 0)
        .next()
        .is_some_and(|program| program == record.program.as_bytes())
}

/// Stops the live processes recorded in `pid_dir` (SIGTERM, SIGKILL after `grace`) and removes
/// their pid files; the pids it signalled.
pub fn stop_recorded(pid_dir: &Path, grace: Duration) -> Vec<u32> {
    let live: Vec<PidRecord> = read_pid_records(pid_dir)
        .into_iter()
        .filter(|record| {
            let live = is_live(record);
            if !live {
                let _ = std::fs::remove_file(pid_dir.join(format!("{}.json", record.pid)));
            }
            live
        })
        .collect();
    for record in &live {
        // SAFETY: kill has no memory-safety preconditions; the pid was checked to run the
        // recorded program.
        unsafe { libc::kill(record.pid as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    let mut left: Vec<&PidRecord> = live.iter().collect();
    while !left.is_empty() && Instant::now() < deadline {
        left.retain(|record| is_live(record));
        std::thread::sleep(Duration::from_millis(25));
    }
    for record in &left {
        if is_live(record) {
            // SAFETY: as above.
            unsafe { libc::kill(record.pid as i32, libc::SIGKILL) };
        }
    }
    for record in &live {
        let _ = std::fs::remove_file(pid_dir.join(format!("{}.json", record.pid)));
    }
    live.iter().map(|record| record.pid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_recorded_stopped_and_reported() {
        let dir = std::env::temp_dir().join(format!("twin-proc-{}", uuid::Uuid::new_v4().simple()));
        let processes = Processes::new(&dir.join("pids")).unwrap();
        let mut sleeper = Command::new("sleep");
        sleeper.arg("60");
        let pid = processes
            .spawn("sleeper", sleeper, &dir.join("log"), None)
            .unwrap();
        let records = read_pid_records(processes.pid_dir());
        assert_eq!(records.len(), 1);
        assert!(is_live(&records[0]), "{records:?}");
        assert!(processes.is_running(pid));
        let mut failing = Command::new("sh");
        failing.args(["-c", "echo broken >&2; exit 3"]);
        let failed = processes
            .spawn("failing", failing, &dir.join("log"), None)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let exit = loop {
            if let Some(exit) = processes.try_wait(failed) {
                break exit;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(exit.code, 3);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let exit = runtime
            .block_on(processes.stop(pid, Duration::from_secs(5)))
            .unwrap();
        assert_eq!(exit.signal, Some(libc::SIGTERM));
        assert!(processes.list().is_empty());
        assert!(read_pid_records(processes.pid_dir()).is_empty());
        assert!(
            std::fs::read_to_string(dir.join("log"))
                .unwrap()
                .contains("broken")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
