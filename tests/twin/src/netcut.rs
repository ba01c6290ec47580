//! Network cuts between the twin's clusters that the Vault processes' own traffic obeys (raft,
//! request forwarding, joins): each cluster's pod processes run in a cgroup v2 group of its own,
//! and a cut is an nftables table rejecting TCP, with a reset, from one cluster's group to the
//! other cluster's pod addresses, both ways, as when the peering between two VNets is lost. The
//! twin itself (API servers, gateways, port-forwards, kube-proxy) stays outside every group, so
//! clients and planx still reach every pod. Needs root, cgroup v2 and `nft` (`.ci/run` installs
//! nftables); without them a cut says what is missing.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where cgroup v2 is mounted, as nftables names a group: relative to `/sys/fs/cgroup`.
const NFT_CGROUP_BASE: &str = "/sys/fs/cgroup";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The cgroup v2 group the pod processes of one cluster run in; removed when dropped (once its
/// processes have ended).
#[derive(Debug)]
pub struct ClusterGroup {
    /// The group's directory.
    dir: PathBuf,
    /// The group's path as nftables reads it (relative to `/sys/fs/cgroup`).
    nft_path: String,
    /// Its depth below the cgroup v2 root.
    level: usize,
}

impl ClusterGroup {
    /// A new group for cluster `cluster` of this process's twin, or why there can be none.
    pub fn create(cluster: &str) -> Result<ClusterGroup, String> {
        remove_stale();
        let root =
            cgroup2_root().ok_or("no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo)")?;
        let relative_root = root
            .strip_prefix(NFT_CGROUP_BASE)
            .map_err(|_| {
                format!(
                    "cgroup v2 is mounted at {}, outside {NFT_CGROUP_BASE}",
                    root.display()
                )
            })?
            .to_path_buf();
        let name = format!(
            "twin-{}-{}-{cluster}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = root.join(&name);
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
        Ok(ClusterGroup {
            dir,
            nft_path: relative_root.join(&name).display().to_string(),
            level: 1,
        })
    }

    /// `cgroup.procs` of the group, open for writing: a process that writes `0` to it joins.
    pub fn procs_file(&self) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
    }
}

impl Drop for ClusterGroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A cut between two clusters' pods; lifted when dropped.
#[derive(Debug)]
pub struct NetCut {
    table: String,
}

impl NetCut {
    /// Cut TCP from `a`'s processes to `b_addresses` and from `b`'s processes to
    /// `a_addresses`.
    pub fn between(
        a: &ClusterGroup,
        a_addresses: &[Ipv4Addr],
        b: &ClusterGroup,
        b_addresses: &[Ipv4Addr],
    ) -> Result<NetCut, String> {
        if a_addresses.is_empty() || b_addresses.is_empty() {
            return Err("a cut needs pod addresses on both sides".into());
        }
        let set = |addresses: &[Ipv4Addr]| {
            addresses
                .iter()
                .map(Ipv4Addr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let table = format!(
            "twin_cut_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let rule = |group: &ClusterGroup, to: &[Ipv4Addr]| {
            format!(
                "    socket cgroupv2 level {} \"{}\" ip daddr {{ {} }} meta l4proto tcp reject with tcp reset\n",
                group.level,
                group.nft_path,
                set(to)
            )
        };
        let script = format!(
            "table inet {table} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{}{}  }}\n}}\n",
            rule(a, b_addresses),
            rule(b, a_addresses)
        );
        nft(&["-f", "-"], Some(&script))?;
        Ok(NetCut { table })
    }
}

impl Drop for NetCut {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "inet", &self.table], None);
    }
}

fn nft(args: &[&str], input: Option<&str>) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft (install nftables): {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The mount point of the cgroup v2 hierarchy.
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        (after.split_whitespace().next() == Some("cgroup2"))
            .then(|| before.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// Remove the groups and tables of twins whose process is gone (killed before they could).
fn remove_stale() {
    let alive = |pid: &str| Path::new("/proc").join(pid).exists();
    if let Some(root) = cgroup2_root()
        && let Ok(entries) = std::fs::read_dir(&root)
    {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("twin-").and_then(|r| r.split('-').next())
                && !alive(pid)
            {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
    let Ok(out) = Command::new("nft").args(["list", "tables"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(table) = line.strip_prefix("table inet ") else {
            continue;
        };
        if let Some(pid) = table
            .strip_prefix("twin_cut_")
            .and_then(|r| r.split('_').next())
            && !alive(pid)
        {
            let _ = nft(&["delete", "table", "inet", table], None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_root_is_read_from_the_mount_table() {
        // Every machine the twin runs on mounts cgroup v2 somewhere under /sys/fs/cgroup.
        let root = cgroup2_root().expect("cgroup v2 is mounted");
        assert!(root.starts_with(NFT_CGROUP_BASE), "{}", root.display());
    }
}
