//! A network cut between two clusters' cgroups, with the real kernel: processes started in one
//! group (as the kubelet starts pod processes) are reset when they connect to the other side's
//! addresses, both ways, while their own side and processes outside every group (the twin,
//! planx, clients) still connect; dropping the cut lifts it.

use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use twin::addresses::Slot;
use twin::netcut::{ClusterGroup, NetCut};
use twin::process::Processes;

/// Whether a process started in `group` (or in none) connects to `address`.
fn connects(
    processes: &Processes,
    group: Option<&ClusterGroup>,
    address: Ipv4Addr,
    port: u16,
) -> bool {
    let dir = std::env::temp_dir().join(format!("twin-netcut-{}", std::process::id()));
    let mut command = Command::new("bash");
    command.args(["-c", &format!("exec 3<>/dev/tcp/{address}/{port}")]);
    let group = group.map(|g| g.procs_file().expect("cgroup.procs"));
    let pid = processes
        .spawn("probe", command, &dir.join("log"), group)
        .expect("bash starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = processes.try_wait(pid) {
            return exit.code == 0;
        }
        assert!(Instant::now() < deadline, "the probe did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn listen(address: Ipv4Addr) -> u16 {
    let listener = TcpListener::bind((address, 0)).expect("bind");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    port
}

#[test]
fn a_cut_resets_the_other_sides_connections_both_ways_and_only_theirs() {
    let slot = Slot::acquire().expect("a loopback slot");
    let s = slot.octet();
    let (a_address, b_address) = (Ipv4Addr::new(127, s, 0, 1), Ipv4Addr::new(127, s, 16, 1));
    let (a_port, b_port) = (listen(a_address), listen(b_address));
    let dir = std::env::temp_dir().join(format!("twin-netcut-{}", std::process::id()));
    let processes = Processes::new(&dir.join("pids")).unwrap();
    let a = ClusterGroup::create("a").expect("a cgroup");
    let b = ClusterGroup::create("b").expect("a cgroup");
    assert!(
        connects(&processes, Some(&a), b_address, b_port),
        "before the cut"
    );

    let cut = NetCut::between(&a, &[a_address], &b, &[b_address]).expect("the cut");
    assert!(
        !connects(&processes, Some(&a), b_address, b_port),
        "a to b is cut"
    );
    assert!(
        !connects(&processes, Some(&b), a_address, a_port),
        "b to a is cut"
    );
    assert!(
        connects(&processes, Some(&a), a_address, a_port),
        "a's own side is not"
    );
    assert!(
        connects(&processes, None, b_address, b_port),
        "outside every group is not"
    );
    drop(cut);
    assert!(connects(&processes, Some(&a), b_address, b_port), "lifted");
    let _ = std::fs::remove_dir_all(&dir);
}
