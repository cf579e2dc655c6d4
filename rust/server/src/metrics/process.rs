//! The process's resident memory, read at scrape time.

/// Resident set size of this process in bytes (Linux: `VmRSS` of
/// `/proc/self/status`); `None` where the system does not tell it.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn a_running_process_has_resident_memory() {
        let rss = super::resident_memory_bytes().unwrap_or(0);
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
