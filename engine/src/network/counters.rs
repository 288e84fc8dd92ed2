//! A container's network interface counters, for `docker stats`.
//!
//! Read from `/proc/PID/net/dev` of the container's init, which shows the
//! network namespace that process is in: no netlink round trip into the
//! namespace, and no privilege beyond reading /proc. The loopback is left
//! out, as moby lists only the sandbox's endpoint interfaces.

use std::io;

/// One interface's totals since it was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
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

/// The counters of every interface but `lo` in `pid`'s network namespace.
pub fn of_pid(pid: i32) -> io::Result<Vec<InterfaceCounters>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    Ok(parse(&text))
}

/// Parses `/proc/net/dev`: two header lines, then `name: ` and sixteen
/// numbers (receive: bytes packets errs drop fifo frame compressed
/// multicast; transmit: bytes packets errs drop fifo colls carrier
/// compressed). A line that does not read so is skipped.
fn parse(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, numbers) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let n: Vec<u64> = numbers
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if n.len() < 16 {
                return None;
            }
            Some(InterfaceCounters {
                name: name.to_owned(),
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_dropped: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_dropped: n[11],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_parses_without_the_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    1296      16    1    2    0     0          0         0      796      10    3    4    0     0       0          0
broken: 1 2 3
";
        assert_eq!(
            parse(text),
            vec![InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 1296,
                rx_packets: 16,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 796,
                tx_packets: 10,
                tx_errors: 3,
                tx_dropped: 4,
            }]
        );
    }

    #[test]
    fn this_process_has_a_readable_table() {
        // Whatever interfaces the test machine has, the file parses.
        assert!(of_pid(std::process::id() as i32).is_ok());
    }
}
