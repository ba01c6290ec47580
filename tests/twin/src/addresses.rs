//! Loopback addresses of one twin: a machine-wide "slot" (the second octet of 127.S.x.y, held
//! with a lock file so concurrent twins never share an address) and the addresses derived from
//! it for pods, ingress gateways and key services.
//!
//! Layout inside slot `S`, for cluster index `C` (0..=14):
//! - pods of the `k`-th StatefulSet the cluster sees (k in 0..=13): `127.S.(16C+k).(ordinal+1)`;
//! - the cluster's Service ClusterIPs: `127.S.(16C+14).1`-`.254` (its kube-proxy listens there);
//! - the cluster's ingress gateway: `127.S.(16C+15).1`;
//! - key service `n`: `127.S.240.(n+1)`;
//! - the emulated cloud's proxy (the only way to it): `127.S.241.1`.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Most clusters one twin can hold.
pub const MAX_CLUSTERS: usize = 15;
/// Most StatefulSets one cluster can run (each gets its own third octet).
pub const MAX_STATEFULSETS: usize = 14;
/// Most pods one StatefulSet can run.
pub const MAX_ORDINALS: u32 = 254;
/// Most key services one twin can run.
pub const MAX_KEY_SERVICES: u32 = 254;

const FIRST_SLOT: u8 = 20;
const LAST_SLOT: u8 = 249;

/// A slot held for the life of this value (the lock file stays locked while it exists).
#[derive(Debug)]
pub struct Slot {
    octet: u8,
    _lock: File,
}

impl Slot {
    /// Takes the first free slot; fails when all are held by other twins.
    ///
    /// The lock files live in one directory shared by every user of the machine (mode 1777, files
    /// 0666), so twins of different users never share addresses either.
    pub fn acquire() -> std::io::Result<Slot> {
        let dir = lock_dir();
        if std::fs::create_dir(&dir).is_ok() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
        let mut last_error = None;
        for octet in FIRST_SLOT..=LAST_SLOT {
            let path = dir.join(format!("127.{octet}.lock"));
            let file = match open_lock_file(&path) {
                Ok(file) => file,
                Err(error) => {
                    last_error = Some(error);
                    continue;
                }
            };
            // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
            let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if locked == 0 {
                return Ok(Slot { octet, _lock: file });
            }
        }
        Err(std::io::Error::other(format!(
            "no loopback slot 127.{FIRST_SLOT}..127.{LAST_SLOT} is free (lock files in {}{})",
            dir.display(),
            last_error.map_or(String::new(), |e| format!("; last error: {e}"))
        )))
    }

    /// The second octet of every address of this twin.
    pub fn octet(&self) -> u8 {
        self.octet
    }

    /// The address of pod `ordinal` of the `statefulset_index`-th StatefulSet of cluster
    /// `cluster_index`; `None` beyond the limits above.
    pub fn pod_ip(
        &self,
        cluster_index: usize,
        statefulset_index: usize,
        ordinal: u32,
    ) -> Option<Ipv4Addr> {
        (cluster_index < MAX_CLUSTERS
            && statefulset_index < MAX_STATEFULSETS
            && ordinal < MAX_ORDINALS)
            .then(|| {
                Ipv4Addr::new(
                    127,
                    self.octet,
                    (16 * cluster_index + statefulset_index) as u8,
                    (ordinal + 1) as u8,
                )
            })
    }

    /// The first three octets of cluster `cluster_index`'s ClusterIP range.
    pub fn service_prefix(&self, cluster_index: usize) -> Option<[u8; 3]> {
        (cluster_index < MAX_CLUSTERS).then(|| [127, self.octet, (16 * cluster_index + 14) as u8])
    }

    /// The ingress gateway address of cluster `cluster_index`.
    pub fn gateway_ip(&self, cluster_index: usize) -> Option<Ipv4Addr> {
        (cluster_index < MAX_CLUSTERS)
            .then(|| Ipv4Addr::new(127, self.octet, (16 * cluster_index + 15) as u8, 1))
    }

    /// The address of the emulated cloud's proxy.
    pub fn cloud_proxy_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.octet, 241, 1)
    }

    /// The address of key service `index`.
    pub fn key_service_ip(&self, index: u32) -> Option<Ipv4Addr> {
        (index < MAX_KEY_SERVICES).then(|| Ipv4Addr::new(127, self.octet, 240, (index + 1) as u8))
    }
}

/// Opens (creating it 0666 if needed) a lock file; read-only is enough for `flock`.
fn open_lock_file(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(path)
    {
        Ok(file) => {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
            Ok(file)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => File::open(path),
        Err(error) => Err(error),
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("twin-slots")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_exclusive_and_addresses_follow_the_layout() {
        let first = Slot::acquire().unwrap();
        let second = Slot::acquire().unwrap();
        assert_ne!(first.octet(), second.octet());
        let s = first.octet();
        assert_eq!(first.pod_ip(0, 0, 0), Some(Ipv4Addr::new(127, s, 0, 1)));
        assert_eq!(first.pod_ip(1, 2, 3), Some(Ipv4Addr::new(127, s, 18, 4)));
        assert_eq!(first.gateway_ip(1), Some(Ipv4Addr::new(127, s, 31, 1)));
        assert_eq!(first.key_service_ip(1), Some(Ipv4Addr::new(127, s, 240, 2)));
        assert_eq!(first.pod_ip(0, MAX_STATEFULSETS, 0), None);
        assert_eq!(first.pod_ip(MAX_CLUSTERS, 0, 0), None);
        assert_eq!(first.pod_ip(0, 0, MAX_ORDINALS), None);
        drop(first);
        assert!(Slot::acquire().is_ok());
    }
}
