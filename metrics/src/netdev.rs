//! A pod's network interfaces' counters, read inside its network namespace:
//! `/proc/thread-self/net/dev` shows the namespace of the reading thread,
//! so a thread of its own enters each pod's namespace in turn (setns on
//! the pinned file), reads, and ends; berthd's other threads never change
//! namespace.

use std::path::Path;

/// One interface's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `name: rx_bytes
/// rx_packets rx_errs ... tx_bytes tx_packets tx_errs ...` per interface.
pub fn parse(text: &str) -> Vec<Interface> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            (f.len() >= 16).then(|| Interface {
                name: name.trim().to_owned(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            })
        })
        .collect()
}

/// The interfaces of the network namespace pinned at `netns` (`lo`
/// left out: kubelet reports the pod's own interfaces). None when the
/// namespace cannot be entered (the pod is going).
pub fn read_in(netns: &Path) -> Option<Vec<Interface>> {
    let mut out = None;
    read_many(&[netns], |_, r| out = r);
    out
}

/// Reads the namespaces pinned at `netns` one after the other on one
/// thread of its own (a thread per namespace cost more than the reads),
/// calling `each` with the index in `netns` and what [`read_in`] would
/// return, as each is read. Nothing is called when the thread cannot be
/// started.
pub fn read_many(netns: &[&Path], mut each: impl FnMut(usize, Option<Vec<Interface>>) + Send) {
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("berth-netstat".into())
            .spawn_scoped(s, move || {
                for (i, ns) in netns.iter().enumerate() {
                    each(i, read_here(ns));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "stats: starting the network counters thread");
        }
    });
}

/// Enters `netns` (this thread only, for good: the caller's thread is
/// one of read_many's) and reads its interfaces.
fn read_here(netns: &Path) -> Option<Vec<Interface>> {
    let ns = std::fs::File::open(netns).ok()?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").ok()?;
    Some(
        parse(&text)
            .into_iter()
            .filter(|i| i.name != "lo")
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1296      16    0    0    0     0          0         0     1296      16    0    0    0     0       0          0
  eth0: 8523911   12345    3    4    0     0          0         7   445566    2233    1    5    0     0       0          0
";

    #[test]
    fn proc_net_dev_is_read_per_interface() {
        let i = parse(DEV);
        assert_eq!(i.len(), 2);
        assert_eq!(
            i[1],
            Interface {
                name: "eth0".into(),
                rx_bytes: 8_523_911,
                rx_packets: 12_345,
                rx_errors: 3,
                rx_dropped: 4,
                tx_bytes: 445_566,
                tx_packets: 2_233,
                tx_errors: 1,
                tx_dropped: 5,
            }
        );
        assert!(parse("garbage\n\nx: 1 2\n").is_empty());
    }

    #[test]
    fn this_namespace_reads_through_a_pinned_file() {
        if !berth_testkit::root_or_skip("this_namespace_reads_through_a_pinned_file") {
            return;
        }
        // Our own namespace, as a pinned pod namespace would be.
        let mine = read_in(Path::new("/proc/self/ns/net"));
        assert!(mine.is_some());
        assert!(read_in(Path::new("/nonexistent/netns")).is_none());
    }

    #[test]
    fn one_thread_reads_each_namespace_in_its_own() {
        if !berth_testkit::root_or_skip("one_thread_reads_each_namespace_in_its_own") {
            return;
        }
        // A namespace with nothing but lo, pinned by the thread in it for
        // as long as the test needs it.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            tx.send(format!("/proc/self/task/{}/ns/net", nix::unistd::gettid()))
                .unwrap();
            let _ = done_rx.recv();
        });
        let empty = rx.recv().unwrap();
        let host = Path::new("/proc/self/ns/net");
        let mut got = vec![None; 4];
        read_many(
            &[
                host,
                Path::new(&empty),
                Path::new("/nonexistent/netns"),
                host,
            ],
            |i, r| got[i] = r.map(|v| v.len()),
        );
        done_tx.send(()).unwrap();
        holder.join().unwrap();
        let on_host = read_in(host).unwrap().len();
        assert!(on_host > 0, "the host has interfaces besides lo");
        assert_eq!(got, [Some(on_host), Some(0), None, Some(on_host)]);
    }
}
