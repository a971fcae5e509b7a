//! What the kernel says about a process: resident memory and CPU time, read from `/proc` so that
//! the coordinator and the sentinel are measured the same way, from outside.

use std::io;
use std::time::Duration;

/// `VmRSS` of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// User plus system CPU time `pid` has used so far (`utime + stime` of `/proc/<pid>/stat`).
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces and parentheses; everything after its
    // closing parenthesis is space-separated, starting with field 3 (state).
    let rest = stat
        .rfind(')')
        .map(|at| &stat[at + 1..])
        .ok_or_else(|| io::Error::other(format!("malformed /proc/{pid}/stat")))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> io::Result<u64> {
        fields
            .get(index)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("malformed /proc/{pid}/stat")))
    };
    // Fields 14 and 15 (utime, stime) are at 11 and 12 counting from field 3.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(
        total as f64 / clock_ticks_per_second() as f64,
    ))
}

/// User plus system CPU time of every child this process has waited for so far
/// (`getrusage(RUSAGE_CHILDREN)`): the difference around a batch of short-lived commands is
/// what they cost together.
#[allow(unsafe_code)]
pub fn children_cpu_time() -> io::Result<Duration> {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes only the struct we pass, which outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(time(usage.ru_utime) + time(usage.ru_stime))
}

#[allow(unsafe_code)]
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf(3) only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The open files the large fan-out needs in one process: fifty thousand subscribers, the
/// anchor's as many, and the bench's own.
const WANTED_OPEN_FILES: u64 = 131_072;

/// Raises the open-file limit so this process and the servers it spawns (children inherit
/// limits) can each hold fifty thousand loopback connections: the hard limit too where the
/// process may (root), up to the kernel's `nr_open`; else the soft limit to the hard one.
/// Returns the new soft limit.
#[allow(unsafe_code)]
pub fn raise_open_files() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: getrlimit/setrlimit read and write only the struct we pass, which outlives the call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        let wanted = WANTED_OPEN_FILES.min(nr_open.max(limit.rlim_max));
        if limit.rlim_max < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: wanted,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Ok(wanted);
            }
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}
