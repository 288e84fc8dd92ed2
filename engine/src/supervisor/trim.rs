//! Letting go of the code a supervisor ran only to start its container.
//!
//! A supervisor is a fork of the zygote, and the start path (namespaces,
//! mounts, seccomp, ID maps) runs far more of the hutch binary than the
//! poll loop it then idles in. Each code page it touched stays mapped in
//! its page tables, and with the kernel's fault-around (64 KiB per fault)
//! that was about 2.9 MiB of resident code (and 0.5 MiB of read-only
//! data) per idle container. The pages themselves live once in the page
//! cache, shared with every other supervisor; only the mappings are ours.
//! Once the container has settled we drop those mappings, and the loop
//! faults back in the few pages it runs. We drop only read-only file
//! mappings that hold no private copy of any page (smaps' `Anonymous: 0`;
//! the relocated RELRO data is such a copy and stays), so nothing is
//! lost: a later fault reads the same bytes from the page cache.

/// Drops this process's page-table entries for its read-only file
/// mappings (the hutch binary's and the shared libraries' code and
/// constants), and returns the allocator's free pages.
pub fn release_code_pages() {
    let ranges = match std::fs::read_to_string("/proc/self/smaps") {
        Ok(smaps) => code_ranges(&smaps),
        Err(e) => {
            tracing::debug!(%e, "reading /proc/self/smaps");
            return;
        }
    };
    // SAFETY: malloc_trim only hands free heap pages back to the kernel.
    unsafe { libc::malloc_trim(0) };
    // Last, so that the code run after it (and faulted back in) is short.
    for &(start, end) in &ranges {
        // SAFETY: the range is one of our own read-only file mappings with
        // no private (anonymous) page, so it holds nothing but file data;
        // MADV_DONTNEED only unmaps its pages, which refault unchanged.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// The address ranges, from smaps, of the read-only (`r-xp`, `r--p`)
/// mappings backed by a file that hold no anonymous page.
fn code_ranges(smaps: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Anonymous:") {
            let clean = kib.trim().strip_suffix("kB").map(str::trim) == Some("0");
            if let Some(range) = current.take().filter(|_| clean) {
                ranges.push(range);
            }
        } else if let Some(range) = mapping_header(line) {
            current = range;
        }
    }
    ranges
}

/// A mapping's header line: `Some(Some(range))` for a read-only file
/// mapping, `Some(None)` for any other mapping, `None` for a field line.
fn mapping_header(line: &str) -> Option<Option<(usize, usize)>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    let path = fields.nth(3).unwrap_or("");
    let wanted = matches!(perms, "r-xp" | "r--p") && path.starts_with('/') && end > start;
    Some(wanted.then_some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_chosen() {
        let smaps = "\
55d0c0000000-55d0c0100000 r--p 00000000 fd:01 1234 /usr/bin/hutch
Rss:                 512 kB
Anonymous:             0 kB
55d0c0100000-55d0c0400000 r-xp 00100000 fd:01 1234 /usr/bin/hutch
Anonymous:             0 kB
55d0c0400000-55d0c0500000 r--p 00400000 fd:01 1234 /usr/bin/hutch
Anonymous:           668 kB
55d0c0500000-55d0c0510000 rw-p 00500000 fd:01 1234 /usr/bin/hutch
Anonymous:             4 kB
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
Anonymous:           132 kB
7f0000100000-7f0000200000 r-xp 00028000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            code_ranges(smaps),
            vec![
                (0x55d0c0000000, 0x55d0c0100000),
                (0x55d0c0100000, 0x55d0c0400000),
                (0x7f0000100000, 0x7f0000200000)
            ]
        );
    }

    #[test]
    fn releasing_our_own_code_keeps_us_running() {
        release_code_pages();
        // Still here, running code and reading constants that were unmapped.
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        assert!(!code_ranges(&smaps).is_empty());
    }
}
