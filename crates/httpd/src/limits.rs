//! The open-file limit and the connection cap derived from it.

/// Descriptors kept back from connections for blob files, SQLite databases,
/// upload sessions and child processes.
const RESERVE: u64 = 256;
/// Largest default cap, whatever the file limit.
const MAX_CAP: u64 = 10_000;

/// The connection cap for a soft open-file limit of `soft`: the limit less
/// a reserve of 256 (but at least half of it), at most 10,000.
pub fn connection_cap(soft: u64) -> usize {
    soft.saturating_sub(RESERVE).max(soft / 2).clamp(1, MAX_CAP) as usize
}

/// `(soft, hard)` RLIMIT_NOFILE now; `u64::MAX` stands for unlimited.
pub fn nofile_limit() -> (u64, u64) {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            return (to_u64(lim.rlim_cur), to_u64(lim.rlim_max));
        }
        (1024, 1024)
    }
    #[cfg(not(unix))]
    {
        (MAX_CAP + RESERVE, MAX_CAP + RESERVE)
    }
}

#[cfg(unix)]
fn to_u64(v: libc::rlim_t) -> u64 {
    if v == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        // rlim_t is u64 on Linux but not everywhere.
        #[allow(clippy::unnecessary_cast)]
        let v = v as u64;
        v
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (the default soft limit
/// of 1,024 is far below what a registry with many clients needs) and
/// return `(soft, hard)` as they are afterwards.
pub fn raise_nofile_limit() -> (u64, u64) {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur != lim.rlim_max {
                let want = lim.rlim_max;
                lim.rlim_cur = want;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    // Some systems (macOS) refuse an unlimited soft limit
                    // for files; settle for a large finite one.
                    lim.rlim_cur = want.min(10_240);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        tracing::warn!(
                            error = %std::io::Error::last_os_error(),
                            "cannot raise the open-file limit"
                        );
                    }
                }
            }
        }
    }
    nofile_limit()
}
