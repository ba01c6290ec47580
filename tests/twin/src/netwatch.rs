//! Proof that nothing leaves the machine: a watcher that samples, every few milliseconds, the
//! TCP and UDP sockets of a process and all its descendants (the test, the twin's `bao` pods,
//! planx) from `/proc`, and records every socket whose remote end is not a loopback address.
//! A connect to another address stays visible for its whole handshake (SYN_SENT), so a sample
//! every 10 ms sees it; sockets of other processes on the machine are not looked at.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A socket seen with a remote end off loopback: the process, the protocol, the remote end.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Escape {
    pub process: String,
    pub protocol: &'static str,
    pub remote: String,
}

impl std::fmt::Display for Escape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} to {}", self.process, self.protocol, self.remote)
    }
}

/// A running watcher; `stop` returns what it saw.
pub struct NetWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(BTreeSet<Escape>, usize)>>,
}

/// What a watch saw: how many samples it took, and every escape.
#[derive(Debug, Clone)]
pub struct NetReport {
    pub samples: usize,
    pub escapes: Vec<Escape>,
}

impl NetWatch {
    /// Watches the process `root` (usually `std::process::id()`) and its descendants.
    pub fn start(root: u32, interval: Duration) -> NetWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("netwatch".into())
            .spawn(move || {
                let mut escapes = BTreeSet::new();
                let mut samples = 0;
                while !flag.load(Ordering::Relaxed) {
                    escapes.extend(sample(root));
                    samples += 1;
                    std::thread::sleep(interval);
                }
                (escapes, samples)
            })
            .ok();
        NetWatch { stop, thread }
    }

    pub fn stop(mut self) -> NetReport {
        self.stop.store(true, Ordering::Relaxed);
        let (escapes, samples) = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        NetReport {
            samples,
            escapes: escapes.into_iter().collect(),
        }
    }
}

/// `root` and every process descended from it: pid to command name.
fn family(root: u32) -> HashMap<u32, String> {
    let mut parents: HashMap<u32, (u32, String)> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        parents.insert(pid, (ppid, name));
    }
    let mut members: HashMap<u32, String> = HashMap::new();
    if let Some((_, name)) = parents.get(&root) {
        members.insert(root, name.clone());
    }
    loop {
        let before = members.len();
        for (pid, (ppid, name)) in &parents {
            if members.contains_key(ppid) && !members.contains_key(pid) {
                members.insert(*pid, name.clone());
            }
        }
        if members.len() == before {
            return members;
        }
    }
}

/// The socket inodes the family holds: inode to `name[pid]`.
fn socket_inodes(members: &HashMap<u32, String>) -> HashMap<u64, String> {
    let mut inodes = HashMap::new();
    for (pid, name) in members {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let target = target.to_string_lossy();
                if let Some(inode) = target
                    .strip_prefix("socket:[")
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse().ok())
                {
                    inodes.insert(inode, format!("{name}[{pid}]"));
                }
            }
        }
    }
    inodes
}

/// The remote end of a `/proc/net` address (`0100007F:1F90`, or 32 hex digits for IPv6).
fn parse_address(text: &str) -> Option<(IpAddr, u16)> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(address, 16).ok()?.swap_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (word, chunk) in address.as_bytes().chunks(8).enumerate() {
                let value = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
                bytes[word * 4..word * 4 + 4].copy_from_slice(&value.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Loopback, or no remote end at all (a listening or unconnected socket).
fn stays_home(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
        }
    }
}

fn sample(root: u32) -> Vec<Escape> {
    let members = family(root);
    let inodes = socket_inodes(&members);
    let wanted: HashSet<&u64> = inodes.keys().collect();
    let mut escapes = Vec::new();
    for (file, protocol) in [
        ("/proc/net/tcp", "tcp"),
        ("/proc/net/tcp6", "tcp"),
        ("/proc/net/udp", "udp"),
        ("/proc/net/udp6", "udp"),
    ] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(inode)) = (fields.get(2), fields.get(9)) else {
                continue;
            };
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            if !wanted.contains(&inode) {
                continue;
            }
            if let Some((ip, port)) = parse_address(remote)
                && !stays_home(ip)
            {
                escapes.push(Escape {
                    process: inodes[&inode].clone(),
                    protocol,
                    remote: format!("{ip}:{port}"),
                });
            }
        }
    }
    escapes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_parse() {
        assert_eq!(
            parse_address("0100007F:1F90"),
            Some((IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8080))
        );
        assert_eq!(
            parse_address("FEA9FEA9:0050"),
            Some((IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), 80))
        );
        let (v6, _) = parse_address("00000000000000000000000001000000:0035").unwrap();
        assert_eq!(v6, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(stays_home(v6));
        assert!(!stays_home(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))));
        assert!(stays_home(IpAddr::V4(Ipv4Addr::new(127, 20, 241, 1))));
    }

    #[test]
    fn loopback_sockets_of_the_family_are_not_escapes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let inodes = socket_inodes(&family(std::process::id()));
        assert!(inodes.len() >= 3, "the sockets are found: {inodes:?}");
        assert!(sample(std::process::id()).is_empty());
    }
}
