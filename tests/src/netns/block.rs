//! Blocks: claiming one for a run, and removing what crashed runs left.
//!
//! Block `N` is 10.213.N.0/24 and every name beginning `vkn<N>`. Its lock is a non-blocking
//! `flock` on `/run/valkey-lab-netns/N.lock`: machine-wide, as namespaces are (a per-user
//! `$TMPDIR` would let two runs with different temp dirs claim the same names), and released by
//! the kernel when the holder dies. So a name under the prefix of a block whose lock is free
//! belongs to a run that died without its destructor, and may be removed by whoever takes the
//! lock; nobody can claim the block while that happens.

use std::{
    collections::BTreeSet,
    fs::{self, File, OpenOptions},
    path::{Path, PathBuf},
};

use super::{NetError, PREFIX, RANGE, Result, step::Step};

const LOCK_DIR: &str = "/run/valkey-lab-netns";
/// Where `ip netns` keeps its namespaces' names.
pub(super) const NETNS_DIR: &str = "/run/netns";
/// The root namespace's interfaces (the test process's `/sys` is the root namespace's).
const ROOT_LINKS: &str = "/sys/class/net";
const FIRST_BLOCK: u8 = 1;
const LAST_BLOCK: u8 = 254;

/// A claimed block: the claim lasts as long as this value.
#[derive(Debug)]
pub(super) struct Block {
    pub(super) n: u8,
    _lock: File,
}

impl Block {
    /// Claims a free block, starting at a per-process offset so parallel runs rarely contend,
    /// and removes what a crashed holder left on it. A block whose /24 the root namespace already
    /// routes belongs to somebody else and is skipped.
    pub(super) fn claim() -> Result<Block> {
        for n in crate::layout::claim_order(FIRST_BLOCK, LAST_BLOCK) {
            let Some(lock) = try_lock(n)? else {
                continue;
            };
            remove(n);
            let subnet = format!("{}.{}.{n}.0/24", RANGE[0], RANGE[1]);
            let routed = Step::ip(&format!("-4 route show root {subnet}")).run()?;
            if routed.trim().is_empty() {
                return Ok(Block { n, _lock: lock });
            }
        }
        Err(NetError::NoFreeBlock)
    }
}

/// Removes the leftovers of every block nobody holds.
pub(super) fn sweep_stale() -> Result<()> {
    let mut blocks = BTreeSet::new();
    for dir in [NETNS_DIR, ROOT_LINKS] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Some(n) = entry.file_name().to_str().and_then(block_of) {
                blocks.insert(n);
            }
        }
    }
    for n in blocks {
        if let Some(_lock) = try_lock(n)? {
            tracing::info!(block = n, "removing what a crashed run left");
            remove(n);
        }
    }
    Ok(())
}

/// Deletes every namespace named `vkn<N>-*` and the root interface `vkn<N>`; the caller holds
/// the block's lock. The kernel destroys a namespace, and the veth ends in it, asynchronously,
/// so the root interface is deleted explicitly: it is gone when this returns.
pub(super) fn remove(n: u8) {
    let prefix = format!("{PREFIX}{n}-");
    if let Ok(entries) = fs::read_dir(NETNS_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(name) = name.to_str().filter(|name| name.starts_with(&prefix)) {
                Step::ip(&format!("netns del {name}")).run_quietly();
            }
        }
    }
    let root = format!("{PREFIX}{n}");
    if Path::new(ROOT_LINKS).join(&root).exists() {
        Step::ip(&format!("link del dev {root}")).run_quietly();
    }
}

fn lock_path(n: u8) -> PathBuf {
    Path::new(LOCK_DIR).join(format!("{n}.lock"))
}

/// Takes block `n`'s lock if nobody holds it.
fn try_lock(n: u8) -> Result<Option<File>> {
    fs::create_dir_all(LOCK_DIR).map_err(|e| NetError::io(format!("creating {LOCK_DIR}"), e))?;
    let path = lock_path(n);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| NetError::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => {
            Err(NetError::io(format!("locking {}", path.display()), e))
        }
    }
}

/// The block of a name this module makes (`vkn<N>` or `vkn<N>-...`), if it is one.
fn block_of(name: &str) -> Option<u8> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits = rest.split('-').next()?;
    let n: u8 = digits.parse().ok()?;
    // Only the exact spelling `format!` produces (no `+`, no leading zero).
    (n.to_string() == digits && (FIRST_BLOCK..=LAST_BLOCK).contains(&n)).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_exact_names_belong_to_a_block() {
        assert_eq!(block_of("vkn12"), Some(12));
        assert_eq!(block_of("vkn12-hub"), Some(12));
        assert_eq!(block_of("vkn254-m3"), Some(254));
        for other in [
            "vkn", "vkn0", "vkn255", "vkn012", "vkn+1", "vknx-hub", "eth0", "vk12",
        ] {
            assert_eq!(block_of(other), None, "{other}");
        }
    }
}
