//! Loopback TCP ports handed to processes that are started later (a party daemon whose card
//! names its endpoint before it runs, a `bitcoind` told its RPC port on the command line).
//!
//! "Bind to port 0, read the port, close the socket" is racy: between the close and the
//! child's bind, any other process on the machine may get the same port, either the same way
//! or because the kernel picks it as an ephemeral port for an outgoing connection or another
//! port-0 bind. Tests running in parallel hit this. A [`PortLease`] closes both holes:
//!
//! - its port lies **below the kernel's ephemeral range** (`ip_local_port_range` on Linux), so
//!   the kernel never hands it out on its own;
//! - it holds an exclusive lock named after the port, so two leases (in any processes of the
//!   machine) never name the same port: on Linux a listening socket in the abstract Unix
//!   namespace (`btcmpc-port-lease-PORT`: nothing on disk, whatever `TMPDIR` each process has),
//!   elsewhere a locked file in the shared temporary directory. Either lock is the operating
//!   system's and goes away with the process, even after `kill -9`.
//!
//! The child binds the port while the lease is held; drop the lease when the child is gone.

#[cfg(not(target_os = "linux"))]
use std::fs::{File, OpenOptions};
use std::io;
use std::net::TcpListener;
#[cfg(not(target_os = "linux"))]
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port a lease hands out.
const LOWEST: u16 = 12_000;

/// Ports below this are what a lease picks from when the ephemeral range cannot be read.
const DEFAULT_EPHEMERAL_START: u16 = 32_768;

/// How many ports a lease tries before it gives up.
const ATTEMPTS: u32 = 512;

/// An exclusively held loopback port (see the [module docs](self)).
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    _lock: Lock,
}

impl PortLease {
    /// Lease a port that no other lease holds and that is free on `127.0.0.1` now.
    ///
    /// # Errors
    ///
    /// When a lock cannot be taken (other than by being held), or no port in the range
    /// `[12000, start of the ephemeral range)` is free after 512 tries.
    pub fn new() -> io::Result<PortLease> {
        let end = ephemeral_start().max(LOWEST + 1_000);
        let span = u32::from(end - LOWEST);
        let mut next = start_offset() % span;
        for _ in 0..ATTEMPTS {
            let port = LOWEST + u16::try_from(next).unwrap_or(0);
            next = (next + 1) % span;
            if let Some(lease) = try_port(port)? {
                return Ok(lease);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free port in {LOWEST}..{end} after {ATTEMPTS} tries"),
        ))
    }

    /// The leased port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// The lease of `port` if nobody else holds it and it is free on loopback.
fn try_port(port: u16) -> io::Result<Option<PortLease>> {
    let Some(lock) = lock(port)? else {
        return Ok(None);
    };
    // Held by us now; a process that is not using leases may still have it bound.
    if TcpListener::bind(("127.0.0.1", port)).is_err() {
        return Ok(None);
    }
    Ok(Some(PortLease { port, _lock: lock }))
}

#[cfg(target_os = "linux")]
type Lock = std::os::unix::net::UnixListener;

/// The lock of `port`: a socket bound to an abstract Unix address, or `None` when another
/// process holds it.
#[cfg(target_os = "linux")]
fn lock(port: u16) -> io::Result<Option<Lock>> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let addr = SocketAddr::from_abstract_name(format!("btcmpc-port-lease-{port}"))?;
    match UnixListener::bind_addr(&addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
type Lock = File;

/// The lock of `port`: a locked file in the shared directory, or `None` when another process
/// holds it.
#[cfg(not(target_os = "linux"))]
fn lock(port: u16) -> io::Result<Option<Lock>> {
    let path: PathBuf = lease_dir()?.join(port.to_string());
    let file = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        // Another user's lease file: that port is theirs.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The shared directory of lock files (created if missing; on Unix writable by every user,
/// with the sticky bit, like the temporary directory itself).
#[cfg(not(target_os = "linux"))]
fn lease_dir() -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join("btcmpc-port-leases");
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Best effort: another user's lease files are then skipped, not fatal.
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
    }
    Ok(dir)
}

/// Where the kernel's ephemeral ports start (Linux), or 32768.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

/// A starting point that differs between processes and between calls, so parallel test
/// processes do not all queue on the same first port.
fn start_offset() -> u32 {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
        .wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(7_919))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leases_never_share_a_port_and_a_dropped_one_is_free_again() {
        let a = PortLease::new().unwrap();
        let b = PortLease::new().unwrap();
        assert_ne!(a.port(), b.port());
        assert!(a.port() >= LOWEST && a.port() < ephemeral_start().max(LOWEST + 1_000));
        // The port is free for the child to bind while the lease is held.
        let l = TcpListener::bind(("127.0.0.1", a.port())).unwrap();
        drop(l);
        // A held port is refused to a second lease; after the drop it can be leased again.
        assert!(try_port(a.port()).unwrap().is_none());
        let port = a.port();
        drop(a);
        assert!(try_port(port).unwrap().is_some());
    }

    #[test]
    fn a_port_bound_by_another_socket_is_skipped() {
        // An ephemeral port: no lease holds it, but a socket does.
        let busy = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        assert!(try_port(port).unwrap().is_none());
        drop(busy);
    }
}
