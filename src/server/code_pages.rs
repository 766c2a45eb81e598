//! Unmapping the code and read-only data a phase of work ran once: start-up,
//! a reload, a burst of connections that ended.
//!
//! The kernel maps a program's code in page-cache folios plus 64 KiB of
//! fault-around, and every page mapped counts in the process's RSS until it
//! exits. Start-up runs about as much code as serving does (config parsing,
//! the CLI, certificate parsing, the dynamic loader's and libc's start-up),
//! and a reload or an attack runs code that steady serving never touches
//! again: measured, a fresh bellhop after one TLS request had 2.0 MiB of its
//! own code resident, of which serving faults back 1.1 MiB
//! (bench/RESULTS.md, "Where idle memory goes"). So, like the kernel freeing
//! its `__init` sections after boot, bellhop drops its page-table entries for
//! every read-only segment of the executable and its shared libraries
//! (`madvise(MADV_DONTNEED)`) once such a phase is over (start-up: before
//! the listeners start, and once more when it has settled, `trim.rs`; a
//! reload; a burst of connections, `trim.rs`), and what serving
//! runs next faults back in from the page cache: minor faults, a few dozen,
//! on the next requests.
//!
//! Only segments the program can never write qualify (no `PF_W`): their
//! pages are always the file's, so dropping them loses nothing. The relro
//! part of a writable segment, which the loader wrote and then made
//! read-only, belongs to a `PF_W` segment and is never touched. The pages
//! stay in the page cache, shared with other processes that map the same
//! files; what changes is that this process no longer holds them, so they
//! are no longer in its RSS, and the kernel may reclaim the ones nobody
//! maps first when memory runs short. Anonymous memory is unchanged (heap
//! pages are `trim.rs`'s concern).

/// Drops this process's mappings of every page of its own read-only
/// segments and those of its shared libraries; returns how many bytes of
/// address space were advised. Only Linux with glibc has `dl_iterate_phdr`
/// and this behaviour of `MADV_DONTNEED`; elsewhere it does nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(super) fn release() -> usize {
    // SAFETY: sysconf reads a constant of the running kernel.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let mut walk = Walk {
        page: u64::try_from(page).unwrap_or(4096),
        released: 0,
    };
    // SAFETY: `dl_iterate_phdr` calls `each_object` synchronously, once per
    // loaded object, with a valid `dl_phdr_info` and the `data` pointer
    // given here, which points at `walk` for the whole call.
    unsafe {
        libc::dl_iterate_phdr(Some(each_object), (&raw mut walk).cast::<libc::c_void>());
    }
    walk.released
}

/// What `each_object` needs and adds up across the objects.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
struct Walk {
    page: u64,
    released: usize,
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn release() -> usize {
    0
}

/// One loaded object: advises each of its segments that is loaded and not
/// writable. The kernel's vDSO (named, not a path) is left alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
unsafe extern "C" fn each_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: glibc passes a valid `dl_phdr_info` (see `release`) whose
    // `dlpi_phdr` points at `dlpi_phnum` program headers and whose name is
    // a NUL-terminated string (empty for the executable), all valid for this
    // call; `data` is `release`'s `&mut Walk`.
    let (info, walk) = unsafe { (&*info, &mut *data.cast::<Walk>()) };
    let name = if info.dlpi_name.is_null() {
        &[][..]
    } else {
        // SAFETY: see above.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    if !(name.is_empty() || name.starts_with(b"/")) || info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: see above.
    let headers =
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    for header in headers {
        if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
            continue;
        }
        let start = info.dlpi_addr.wrapping_add(header.p_vaddr);
        let Some(range) = whole_pages(start, header.p_memsz, walk.page) else {
            continue;
        };
        // SAFETY: the range lies inside a loaded, never-writable segment of
        // an object that stays loaded (bellhop never unloads one): its pages
        // read back as the file's after the advice, so no memory the
        // program relies on changes. An error (a locked range) only means
        // the pages stay mapped.
        if unsafe { libc::madvise(range.0 as *mut libc::c_void, range.1, libc::MADV_DONTNEED) } == 0
        {
            walk.released += range.1;
        }
    }
    0
}

/// The whole pages (of `page` bytes, a power of two) inside `len` bytes at
/// `start`, as (start, length):
/// rounded inward, so that a page shared with a neighbouring segment is
/// never advised.
fn whole_pages(start: u64, len: u64, page: u64) -> Option<(usize, usize)> {
    let first = start.checked_add(page - 1)? & !(page - 1);
    let end = start.checked_add(len)? & !(page - 1);
    let length = end.checked_sub(first).filter(|&l| l > 0)?;
    Some((usize::try_from(first).ok()?, usize::try_from(length).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_pages_rounds_inward() {
        assert_eq!(whole_pages(0x1000, 0x3000, 0x1000), Some((0x1000, 0x3000)));
        assert_eq!(whole_pages(0x1010, 0x3000, 0x1000), Some((0x2000, 0x2000)));
        assert_eq!(whole_pages(0x1010, 0x0ff0, 0x1000), None);
        assert_eq!(whole_pages(0x1010, 0x8000, 0x4000), Some((0x4000, 0x4000)));
        assert_eq!(whole_pages(u64::MAX - 10, 100, 0x1000), None);
    }

    /// Resident KiB of this test executable's code (its `r-xp` mappings).
    fn code_resident_kib() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").expect("/proc/self/exe");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
        let mut in_code = false;
        let mut kib = 0;
        for line in smaps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields
                .first()
                .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
            {
                in_code = fields.get(1) == Some(&"r-xp")
                    && fields.get(5).map(std::path::Path::new) == Some(exe.as_path());
            } else if in_code && fields.first() == Some(&"Rss:") {
                kib += fields
                    .get(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        kib
    }

    /// A release unmaps the code that ran, and the program keeps running the
    /// code and reading the data it dropped: they fault back from the file.
    #[test]
    fn release_unmaps_code_that_keeps_working() {
        let before = format!("{:?}", (1..=20).map(|n| n * n).collect::<Vec<u64>>());
        let resident = code_resident_kib();
        assert!(release() > 0, "nothing was advised");
        let after_release = code_resident_kib();
        let after = format!("{:?}", (1..=20).map(|n| n * n).collect::<Vec<u64>>());
        assert_eq!(before, after);
        assert!(
            after_release < resident,
            "code resident {resident} KiB before the release, {after_release} KiB after"
        );
    }
}
