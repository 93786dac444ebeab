//! What the load generator reads from the operating system: its own CPU time
//! (getrusage), the open-file limit, and the engine's memory and CPU time
//! from /proc.

use std::path::Path;
use std::time::Duration;

/// User plus system CPU time of this process so far.
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Raises the soft open-file limit to the hard limit; as root, first tries to
/// raise the hard limit to `want`. Returns the soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid resource and struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_max < want as libc::rlim_t {
            let raised = libc::rlimit {
                rlim_cur: want as libc::rlim_t,
                rlim_max: want as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return limit.rlim_max as u64;
            }
        }
        limit.rlim_cur as u64
    }
}

/// The open-file limit (soft) of another process, from /proc/<pid>/limits.
pub fn nofile_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Resident memory of a process in bytes (VmRSS of /proc/<pid>/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User plus system CPU time of a process (all threads), from /proc/<pid>/stat.
pub fn cpu_of(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after its closing ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// Finds the engine's process: a `chat engine` (argv[0] ending in `chat`,
/// argv[1] `engine`), the child that `chat up` starts. Returns the pids
/// found, newest (highest pid) first.
pub fn find_engine_pids() -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_chat = args.first().is_some_and(|arg0| {
            Path::new(std::str::from_utf8(arg0).unwrap_or(""))
                .file_name()
                .is_some_and(|name| name == "chat")
        });
        if is_chat && args.get(1).is_some_and(|arg| *arg == b"engine") {
            found.push(pid);
        }
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    found
}

/// The engine pid to watch: the flag, else the one `chat engine` running.
pub fn engine_pid(flag: Option<u32>) -> Option<u32> {
    if flag.is_some() {
        return flag;
    }
    let pids = find_engine_pids();
    if pids.len() > 1 {
        eprintln!(
            "note: several `chat engine` processes ({pids:?}); watching {} (use --engine-pid)",
            pids[0]
        );
    }
    pids.first().copied()
}

/// A histogram's cumulative buckets summed over every label set (each
/// shard's), as (upper bound, count) in increasing bound order; `+Inf` is
/// `f64::INFINITY`. Empty when the histogram is absent.
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some(le) = rest
            .split("le=\"")
            .nth(1)
            .and_then(|tail| tail.split('"').next())
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse::<f64>() {
                Ok(bound) => bound,
                Err(_) => continue,
            }
        };
        let Some(count) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        match buckets.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, total)) => *total += count,
            None => buckets.push((bound, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The upper bound of the bucket that holds quantile `q` of the
/// observations between two readings of one histogram's buckets (`after`
/// minus `before`); `None` without observations.
pub fn histogram_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|&(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0.0, |(_, c)| *c);
            (bound, count - earlier)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, cumulative)| *cumulative >= q * total)
        .map(|(bound, _)| *bound)
}

/// Sums every sample of one metric (all label sets) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

#[cfg(test)]
mod histogram_tests {
    use super::*;

    const TEXT: &str = "\
h_bucket{shard=\"0\",le=\"100\"} 1
h_bucket{shard=\"0\",le=\"500\"} 3
h_bucket{shard=\"0\",le=\"+Inf\"} 4
h_bucket{shard=\"1\",le=\"100\"} 5
h_bucket{shard=\"1\",le=\"500\"} 5
h_bucket{shard=\"1\",le=\"+Inf\"} 6
h_sum{shard=\"0\"} 9
";

    #[test]
    fn buckets_add_up_across_shards_and_quantiles_read_the_delta() {
        let after = histogram_buckets(TEXT, "h");
        assert_eq!(
            after,
            vec![(100.0, 6.0), (500.0, 8.0), (f64::INFINITY, 10.0)]
        );
        assert_eq!(histogram_quantile(&[], &after, 0.5), Some(100.0));
        assert_eq!(histogram_quantile(&[], &after, 0.8), Some(500.0));
        assert_eq!(histogram_quantile(&[], &after, 0.99), Some(f64::INFINITY));
        // Only what happened between the readings counts.
        let before = vec![(100.0, 6.0), (500.0, 6.0), (f64::INFINITY, 6.0)];
        assert_eq!(histogram_quantile(&before, &after, 0.5), Some(500.0));
        assert_eq!(histogram_quantile(&after, &after, 0.5), None);
    }
}
