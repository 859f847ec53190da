//! What the kernel reports about a running process (Linux `/proc`): the benchmarks' memory
//! figures.

/// Resident memory of process `pid`, KiB (`VmRSS` of `/proc/PID/status`); `None` where the kernel
/// does not say (no such process, or no `/proc`).
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory_and_no_process_has_none() {
        assert!(resident_kib(std::process::id()).is_some_and(|kib| kib > 0));
        // Above the kernel's largest process id (2^22), so never a live process.
        assert_eq!(resident_kib(u32::MAX), None);
    }
}
