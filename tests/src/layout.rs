//! Address blocks: every lab owns one loopback /24 so that every pod can use the standard ports.
//!
//! Layout of block `N` (127.0.N.0/24, N in 10..=249):
//!
//! | host part   | what                                   | port  |
//! |-------------|----------------------------------------|-------|
//! | 10 + i      | data pod `i` (`valkey-i`)              | 6379  |
//! | 100 + j     | sentinel `j` (`sentinel-j`)            | 26379 |
//! | 200 + k     | free for the test (coordinators, ...)  | any   |
//!
//! Why a /24 per lab: sentinels identify peers by `ip:port`, and a real deployment has every pod on
//! the standard ports, so each pod needs its own IP. Tests run in parallel and, under
//! cargo-nextest, in separate processes, so the claim must work across processes: a non-blocking
//! `flock` on `$TMPDIR/valkey-lab-blocks/N.lock`, held for the lab's lifetime and released by the
//! kernel if the process dies. A block whose ports are still bound (a leaked server, or somebody's
//! hand-run instance) is skipped. Blocks 250..=255 are left to humans.

use std::{
    fs::{self, File, OpenOptions},
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::error::{LabError, Result};

/// The standard data port.
pub const DATA_PORT: u16 = 6379;
/// The standard sentinel port.
pub const SENTINEL_PORT: u16 = 26379;

const FIRST_BLOCK: u8 = 10;
const LAST_BLOCK: u8 = 249;
/// Most data pods a block can hold (host parts 10..100).
pub const MAX_DATA_PODS: usize = 90;
/// Most sentinels a block can hold (host parts 100..200).
pub const MAX_SENTINELS: usize = 100;
/// Spare addresses of a block (host parts 200..256).
pub const SPARE_IPS: usize = 56;

/// A claimed 127.0.N.0/24. The claim lasts as long as this value (it holds the lock file open).
#[derive(Debug)]
pub struct AddressBlock {
    n: u8,
    _lock: File,
}

/// Every block number of `first..=last`, once each, from a per-process offset, so parallel
/// processes claiming blocks rarely try the same one first.
pub(crate) fn claim_order(first: u8, last: u8) -> impl Iterator<Item = u8> {
    let span = u32::from(last - first) + 1;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let start = (std::process::id().wrapping_mul(7919) ^ nanos) % span;
    (0..span).map(move |step| first + ((start + step) % span) as u8)
}

impl AddressBlock {
    /// Claims the first free block, starting at a per-process offset so parallel processes rarely
    /// contend. `data_pods` and `sentinels` say which addresses are probed for bound ports.
    pub fn claim(data_pods: usize, sentinels: usize) -> Result<Self> {
        assert!(data_pods <= MAX_DATA_PODS && sentinels <= MAX_SENTINELS);
        let dir = lock_dir();
        fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        for n in claim_order(FIRST_BLOCK, LAST_BLOCK) {
            let path = dir.join(format!("{n}.lock"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| LabError::io(format!("opening {}", path.display()), e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => continue,
                Err(fs::TryLockError::Error(e)) => {
                    return Err(LabError::io(format!("locking {}", path.display()), e));
                }
            }
            let block = AddressBlock { n, _lock: file };
            if block.ports_free(data_pods, sentinels) {
                return Ok(block);
            }
        }
        Err(LabError::NoFreeBlock)
    }

    /// The block's third octet.
    pub fn number(&self) -> u8 {
        self.n
    }

    /// IP of data pod `i`.
    pub fn data_ip(&self, i: usize) -> Ipv4Addr {
        assert!(i < MAX_DATA_PODS, "data pod index {i} out of the block");
        Ipv4Addr::new(127, 0, self.n, 10 + i as u8)
    }

    /// IP of sentinel `j`.
    pub fn sentinel_ip(&self, j: usize) -> Ipv4Addr {
        assert!(j < MAX_SENTINELS, "sentinel index {j} out of the block");
        Ipv4Addr::new(127, 0, self.n, 100 + j as u8)
    }

    /// A spare IP (`k` < [`SPARE_IPS`]) for whatever else the test runs (a coordinator, a
    /// client's bind address).
    pub fn spare_ip(&self, k: usize) -> Ipv4Addr {
        assert!(k < SPARE_IPS, "spare index {k} out of the block");
        Ipv4Addr::new(127, 0, self.n, 200 + k as u8)
    }

    /// `ip:6379` of data pod `i`.
    pub fn data_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.data_ip(i), DATA_PORT))
    }

    /// `ip:26379` of sentinel `j`.
    pub fn sentinel_addr(&self, j: usize) -> SocketAddr {
        SocketAddr::from((self.sentinel_ip(j), SENTINEL_PORT))
    }

    fn ports_free(&self, data_pods: usize, sentinels: usize) -> bool {
        let data = (0..data_pods).map(|i| self.data_addr(i));
        let sentinel = (0..sentinels).map(|j| self.sentinel_addr(j));
        // The probe listener is closed at once; valkey sets SO_REUSEADDR, as std does, so the
        // probe leaves nothing behind that could stop the real server from binding.
        data.chain(sentinel)
            .all(|addr| TcpListener::bind(addr).is_ok())
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("valkey-lab-blocks")
}
