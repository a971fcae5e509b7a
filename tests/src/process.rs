//! Spawning and signalling the lab's processes so that none outlives its test.
//!
//! Three layers make sure of it:
//! 1. [`crate::Lab`]'s `Drop` sends SIGKILL to every child and reaps it (panics included).
//! 2. Every child is spawned with `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it when the test
//!    process dies, even by SIGKILL, when no destructor runs.
//! 3. The death signal fires when the *thread* that forked the child exits, not the process. Test
//!    and tokio worker threads come and go, so every child is forked by one spawner thread that
//!    lives as long as the process and takes requests over a channel.
//!
//! Signals go only to pids this lab spawned and has not reaped yet: an unreaped child keeps its pid
//! (as a zombie if it died), so a pid can never have been reused by an unrelated process.

use std::{
    io,
    os::unix::process::CommandExt,
    process::{Child, Command},
    sync::{OnceLock, mpsc},
    thread,
};

use tokio::sync::oneshot;

/// A spawn request for the spawner thread.
struct SpawnRequest {
    command: Command,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The spawner thread's inbox; the thread is started on first use and never exits.
fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("valkey-lab-spawner".into())
            .spawn(move || {
                // Holding `tx` in a static means `recv` never sees a disconnect: the thread lives
                // until the process exits, which is what keeps PDEATHSIG from firing early.
                for mut request in rx {
                    let result = request.command.spawn();
                    let _ = request.reply.send(result);
                }
            })
            .expect("spawning the valkey-lab spawner thread");
        tx
    })
}

/// Spawns `command` from the spawner thread with a parent-death signal set. Public so that tests
/// starting their own processes (the coordinator, a client script) get the same guarantee; the
/// caller owns the `Child` and must kill and reap it (or hand it to [`crate::Lab::spawn_aux`]).
pub async fn spawn(mut command: Command) -> io::Result<Child> {
    die_with_parent(&mut command, std::process::id());
    let (reply, response) = oneshot::channel();
    spawner()
        .send(SpawnRequest { command, reply })
        .map_err(|_| io::Error::other("the valkey-lab spawner thread is gone"))?;
    response
        .await
        .map_err(|_| io::Error::other("the valkey-lab spawner thread dropped a request"))?
}

/// Makes the kernel SIGKILL the child when the spawner thread (and so the test process) dies.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command, parent: u32) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe calls
    // are allowed. It calls prctl(2), getppid(2) and raise(3) (a kill(2) on itself), all
    // async-signal-safe, allocates nothing and touches no lock. The getppid check covers the race
    // where the parent died between fork and prctl: the child was then re-parented and would never
    // get the signal, so it kills itself.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// Signals the lab may send besides SIGKILL (which goes through `Child::kill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Freeze the process: it keeps its sockets but answers nothing (a hung pod, a long GC).
    Stop,
    /// Thaw a stopped process.
    Cont,
    /// Ask for a graceful shutdown.
    Term,
}

/// Sends `signal` to a child of this process that has not been reaped.
#[allow(unsafe_code)]
pub(crate) fn send_signal(child: &Child, signal: Signal) -> io::Result<()> {
    let sig = match signal {
        Signal::Stop => libc::SIGSTOP,
        Signal::Cont => libc::SIGCONT,
        Signal::Term => libc::SIGTERM,
    };
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions. The pid belongs to `child`, which has not
    // been waited for (we hold it by reference), so the pid cannot have been recycled.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIGKILLs a whole process group led by `pid` (a child spawned with `process_group(0)`): how
/// kbagent ends an action at its timeout, so no grandchild outlives it.
#[allow(unsafe_code)]
pub fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the group
        // this process created for its child, which exists until the child is reaped.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// Sends `signal` to the process group led by `pid` (SIGTERM when a pod is deleted: the
/// container's shell and the server it runs both get it).
#[allow(unsafe_code)]
pub fn signal_group(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: as for `kill_group`.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}
