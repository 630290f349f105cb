//! The process's own resource use: resident memory (now and peak) and CPU
//! time, for metrics and benchmarks. Reads `/proc/self` and `getrusage`.

/// A snapshot of this process's resource use.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// User plus system CPU seconds.
    pub cpu_seconds: f64,
}

impl ProcessStats {
    pub fn read() -> ProcessStats {
        let mut stats = ProcessStats::default();
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            for line in status.lines() {
                let kib = |l: &str| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                        * 1024
                };
                if line.starts_with("VmRSS:") {
                    stats.rss_bytes = kib(line);
                } else if line.starts_with("VmHWM:") {
                    stats.peak_rss_bytes = kib(line);
                }
            }
        }
        // SAFETY: getrusage only writes into the struct we pass.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            stats.cpu_seconds = secs(usage.ru_utime) + secs(usage.ru_stime);
        }
        stats
    }
}
