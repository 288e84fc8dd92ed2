//! `GET /containers/{id}/top` and `/stats`. With a delegated cgroup
//! hierarchy the container's own cgroup gives memory (usage, limit, page
//! cache), CPU time and PIDs; otherwise a pod's cgroups are neither ours
//! nor writable, so figures are summed from /proc over the container's
//! processes (CPU time, resident memory, PIDs). The rest of Docker's shape
//! is present with zeros.

use std::time::Duration;

use bollard_stubs::models::ContainerTopResponse;
use hutch_engine::containers::{ContainerDetails, Engine};
use hutch_engine::procs;
use hyper::{Response, StatusCode};
use serde_json::json;

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::{self, json_line, Body};
use super::host;

type Reply = Result<Response<Body>, ApiError>;

/// One process as /proc shows it.
#[derive(Debug, Clone)]
struct Proc {
    pid: i32,
    ppid: i32,
    uid: u32,
    /// utime + stime, in clock ticks.
    ticks: u64,
    /// Start time after boot, in clock ticks.
    start: u64,
    rss_pages: u64,
    tty: i32,
    cmd: String,
}

fn read_proc(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything.
    let close = stat.rfind(')')?;
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().and_then(|u| u.parse().ok()))
        .unwrap_or(0);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = if cmdline.is_empty() {
        format!("[{}]", &stat[stat.find('(')? + 1..close])
    } else {
        String::from_utf8_lossy(cmdline.strip_suffix(&[0]).unwrap_or(&cmdline)).replace('\0', " ")
    };
    let rss_pages = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    Some(Proc {
        pid,
        ppid: num(1)? as i32,
        uid,
        ticks: num(11)? + num(12)?,
        start: num(19)?,
        rss_pages,
        tty: num(4)? as i32,
        cmd,
    })
}

/// The container's processes (see `hutch_engine::procs`): its init's
/// mount namespace and their descendants.
fn container_procs(init: i32) -> Vec<Proc> {
    let Some(ns) = (init > 0).then(|| procs::MountNs::of_pid(init)).flatten() else {
        return Vec::new();
    };
    procs::members(ns)
        .into_iter()
        .filter_map(read_proc)
        .collect()
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |t| t as u64)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64)
}

/// `[[MM:]SS]` style `TIME` of ps: `HH:MM:SS`.
fn cpu_time(ticks: u64) -> String {
    let s = ticks / clock_ticks();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// `GET /containers/{id}/top`: `ps -ef`'s columns, read from /proc; with
/// other `ps_args` (`docker top C aux`), what the pod's `ps` prints for
/// them, kept to the container's processes, as moby does.
pub async fn top(req: ApiRequest) -> Reply {
    let query = req.param("id").to_string();
    let ps_args = req
        .query
        .non_empty("ps_args")
        .filter(|a| a.trim() != "-ef")
        .map(str::to_owned);
    let d = req.daemon.with_engine(move |e| e.inspect(&query)).await?;
    if !d.state.running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Container {} is not running", d.config.id),
        ));
    }
    let procs = tokio::task::spawn_blocking(move || container_procs(d.state.pid)).await?;
    if let Some(args) = ps_args {
        let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
        let top = tokio::task::spawn_blocking(move || ps_top(&args, &pids))
            .await?
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        return Ok(response::json(StatusCode::OK, &top));
    }
    let boot = boot_time();
    let hz = clock_ticks();
    let processes = procs
        .iter()
        .map(|p| {
            let started = chrono::DateTime::from_timestamp(boot + (p.start / hz) as i64, 0)
                .map(|t| t.with_timezone(&chrono::Local).format("%H:%M").to_string())
                .unwrap_or_default();
            vec![
                if p.uid == 0 {
                    "root".to_string()
                } else {
                    p.uid.to_string()
                },
                p.pid.to_string(),
                p.ppid.to_string(),
                "0".to_string(),
                started,
                if p.tty == 0 { "?".into() } else { "pts".into() },
                cpu_time(p.ticks),
                p.cmd.clone(),
            ]
        })
        .collect();
    let titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];
    Ok(response::json(
        StatusCode::OK,
        &ContainerTopResponse {
            titles: Some(titles.iter().map(|t| t.to_string()).collect()),
            processes: Some(processes),
        },
    ))
}

/// Runs `ps ARGS -q PIDS` (or `ps ARGS` when the arguments cannot take
/// `-q`, as `f` cannot) and keeps the rows of `pids`, found by the `PID`
/// column; the last column takes the rest of each line (the command).
fn ps_top(args: &str, pids: &[i32]) -> Result<ContainerTopResponse, String> {
    let args: Vec<&str> = args.split_whitespace().collect();
    let listed = pids
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let run = |extra: &[&str]| {
        std::process::Command::new("ps")
            .args(&args)
            .args(extra)
            .output()
            .map_err(|e| format!("Error running ps: {e}"))
    };
    let mut out = run(&["-q", &listed])?;
    if !out.status.success() {
        out = run(&[])?;
    }
    if !out.status.success() {
        return Err(format!(
            "Error running ps: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_ps(&String::from_utf8_lossy(&out.stdout), pids)
}

fn parse_ps(output: &str, pids: &[i32]) -> Result<ContainerTopResponse, String> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let pid_column = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| "Couldn't find PID field in ps output".to_string())?;
    let mut processes = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_column).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pids.contains(&pid) || fields.len() < titles.len() {
            continue;
        }
        let (head, rest) = fields.split_at(titles.len() - 1);
        let mut row: Vec<String> = head.iter().map(|f| f.to_string()).collect();
        row.push(rest.join(" "));
        processes.push(row);
    }
    Ok(ContainerTopResponse {
        titles: Some(titles),
        processes: Some(processes),
    })
}

fn boot_time() -> i64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The host's total CPU time in nanoseconds (`system_cpu_usage`).
fn system_cpu_nanos() -> u64 {
    let ticks: u64 = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum()
            })
        })
        .unwrap_or(0);
    ticks * (1_000_000_000 / clock_ticks())
}

/// One sample of what /proc tells about the container.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    cpu_nanos: u64,
    system_nanos: u64,
    memory: u64,
    pids: u64,
    /// From the cgroup: its memory limit, page cache and PIDs limit.
    memory_limit: Option<u64>,
    cache: u64,
    pids_limit: Option<u64>,
}

/// From the container's cgroup when it has one, else from /proc.
fn sample(engine: &Engine, id: &str, init: i32) -> Sample {
    if let Ok(Some(s)) = engine.cgroup_stats(id) {
        return Sample {
            cpu_nanos: s.cpu_usage_ns,
            system_nanos: system_cpu_nanos(),
            memory: s.memory_usage,
            pids: s.pids_current,
            memory_limit: s.memory_limit,
            cache: s.memory_cache,
            pids_limit: s.pids_limit,
        };
    }
    proc_sample(init)
}

fn proc_sample(init: i32) -> Sample {
    let procs = container_procs(init);
    let hz = clock_ticks();
    Sample {
        cpu_nanos: procs.iter().map(|p| p.ticks).sum::<u64>() * (1_000_000_000 / hz),
        system_nanos: system_cpu_nanos(),
        memory: procs.iter().map(|p| p.rss_pages).sum::<u64>() * page_size(),
        pids: procs.len() as u64,
        ..Sample::default()
    }
}

fn cpu_json(s: &Sample) -> serde_json::Value {
    json!({
        "cpu_usage": {
            "total_usage": s.cpu_nanos,
            "percpu_usage": null,
            "usage_in_kernelmode": 0,
            "usage_in_usermode": 0,
        },
        "system_cpu_usage": s.system_nanos,
        "online_cpus": host::ncpu(),
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    })
}

fn stats_json(
    d: &ContainerDetails,
    pre: &Sample,
    now: &Sample,
    pre_read: &str,
    networks: serde_json::Value,
) -> serde_json::Value {
    json!({
        "name": format!("/{}", d.config.name),
        "id": d.config.id,
        "read": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "preread": pre_read,
        "pids_stats": {"current": now.pids, "limit": now.pids_limit},
        "blkio_stats": {
            "io_service_bytes_recursive": null,
            "io_serviced_recursive": null,
            "io_queue_recursive": null,
            "io_service_time_recursive": null,
            "io_wait_time_recursive": null,
            "io_merged_recursive": null,
            "io_time_recursive": null,
            "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(now),
        "precpu_stats": cpu_json(pre),
        "memory_stats": {
            "usage": now.memory,
            // The CLI subtracts the page cache (v1 and v2 names).
            "stats": if now.cache > 0 {
                json!({"total_inactive_file": now.cache, "inactive_file": now.cache})
            } else {
                json!({})
            },
            "limit": now.memory_limit.map_or_else(host::mem_total, |l| l as i64),
        },
        "networks": networks,
    })
}

/// Per-interface counters of the container's own network namespace (none
/// for `--network host` or `container:`, whose namespace is another's, as
/// moby reports none for them).
/// Reads /proc: call it off the async threads.
fn networks(d: &ContainerDetails) -> serde_json::Value {
    let mode = super::container_views::network_mode(d);
    if d.state.pid <= 0 || mode == "host" || mode.starts_with("container:") {
        return json!({});
    }
    let counters = hutch_engine::network::counters::of_pid(d.state.pid).unwrap_or_default();
    let map: serde_json::Map<String, serde_json::Value> = counters
        .into_iter()
        .map(|c| {
            let stats = json!({
                "rx_bytes": c.rx_bytes, "rx_packets": c.rx_packets,
                "rx_errors": c.rx_errors, "rx_dropped": c.rx_dropped,
                "tx_bytes": c.tx_bytes, "tx_packets": c.tx_packets,
                "tx_errors": c.tx_errors, "tx_dropped": c.tx_dropped,
            });
            (c.name, stats)
        })
        .collect();
    serde_json::Value::Object(map)
}

/// `GET /containers/{id}/stats`: with `stream=false` one report whose
/// `precpu_stats` is a sample taken just before (so the CLI's CPU % means
/// something); streamed, one a second.
pub async fn stats(req: ApiRequest) -> Reply {
    let stream = req.query.get("stream").is_none() || req.query.bool("stream");
    let one_shot = req.query.bool("one-shot");
    let query = req.param("id").to_string();
    let engine = req.daemon.engine.clone();
    let d = req.daemon.with_engine(move |e| e.inspect(&query)).await?;
    let id = d.config.id.clone();
    let zero_time = "0001-01-01T00:00:00Z".to_string();
    if !stream {
        let init = d.state.pid;
        let (pre, pre_read, now, nets, d) = tokio::task::spawn_blocking(move || {
            let (pre, pre_read) = if one_shot || init <= 0 {
                (Sample::default(), "0001-01-01T00:00:00Z".to_string())
            } else {
                let pre = sample(&engine, &id, init);
                let read = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                std::thread::sleep(Duration::from_millis(200));
                (pre, read)
            };
            let now = sample(&engine, &id, init);
            let nets = networks(&d);
            (pre, pre_read, now, nets, d)
        })
        .await?;
        return Ok(response::json(
            StatusCode::OK,
            &stats_json(&d, &pre, &now, &pre_read, nets),
        ));
    }
    let (resp, tx) = response::stream("application/json");
    tokio::spawn(async move {
        let mut pre = Sample::default();
        let mut pre_read = zero_time;
        loop {
            let engine = engine.clone();
            let id = id.clone();
            let got = tokio::task::spawn_blocking(move || {
                let d = engine.inspect(&id).ok()?;
                let s = sample(&engine, &id, d.state.pid);
                let nets = networks(&d);
                Some((d, s, nets))
            })
            .await;
            let Ok(Some((d, now, nets))) = got else {
                return;
            };
            let line = json_line(&stats_json(&d, &pre, &now, &pre_read, nets));
            if tx.send(line).await.is_err() {
                return;
            }
            pre = now;
            pre_read = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_output_is_kept_to_the_containers_processes() {
        let output = "USER  PID %CPU COMMAND
root    1  0.0 /sbin/init splash
root   42  1.5 sleep 300
root   43  0.0 [kworker/0:1]
";
        let top = parse_ps(output, &[42]).expect("parses");
        assert_eq!(
            top.titles,
            Some(vec![
                "USER".into(),
                "PID".into(),
                "%CPU".into(),
                "COMMAND".into()
            ])
        );
        assert_eq!(
            top.processes,
            Some(vec![vec![
                "root".to_string(),
                "42".into(),
                "1.5".into(),
                "sleep 300".into()
            ]])
        );
        assert!(parse_ps("USER COMMAND\nroot x\n", &[1]).is_err());
    }
}
