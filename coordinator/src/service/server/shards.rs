//! The threads client connections run on. Each is a plain thread running a single-threaded
//! tokio runtime of its own, with its own reactor and timers; the accept loops hand each new
//! connection to the next one in turn, and it stays there for its life.
//!
//! Why: on a work-stealing runtime a request's readiness, its task and its reply may be handled
//! by different workers, and the wake-ups and steals between them cost CPU on every request
//! (a sentinel, single-threaded, pays none). Pinned to one thread, a connection's whole request
//! path is that thread's epoll, read and write; the threads still share the one registry, so a
//! tap message wakes the subscribers of every thread at once and each thread delivers to its
//! own in parallel.
//!
//! Ownership: the accept loop owns the handles and only spawns; each thread owns its runtime
//! and drops it when told to stop, after every connection task has ended.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

/// The client threads, or none: connections then run on the caller's runtime.
pub(super) struct Shards {
    shards: Vec<Shard>,
    next: AtomicUsize,
}

struct Shard {
    handle: Handle,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Shards {
    /// Starts `count` threads (0: none).
    pub(super) fn start(count: usize) -> io::Result<Shards> {
        let shards = (0..count)
            .map(|i| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let handle = runtime.handle().clone();
                let (stop, stopped) = oneshot::channel::<()>();
                let thread = std::thread::Builder::new()
                    .name(format!("client-{i}"))
                    .spawn(move || {
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                    })?;
                Ok(Shard {
                    handle,
                    stop,
                    thread,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Shards {
            shards,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `serve(stream)` for one accepted connection, tracked by `tasks`: on the next thread
    /// in turn (the stream moves to that thread's reactor), or here when there are none.
    pub(super) fn place<F, Fut>(
        &self,
        stream: TcpStream,
        tasks: &TaskTracker,
        serve: F,
    ) -> io::Result<()>
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.shards.is_empty() {
            tasks.spawn(serve(stream));
            return Ok(());
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        // Deregistered from this runtime's reactor here, registered with the thread's there.
        let stream = stream.into_std()?;
        let task = tasks.track_future(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(error) => tracing::warn!(%error, "cannot register a client on its thread"),
            }
        });
        drop(self.shards[k].handle.spawn(task));
        Ok(())
    }

    /// Stops every thread once its connections have ended (the caller waited for them) and
    /// joins it.
    pub(super) async fn stop(self) {
        let threads: Vec<JoinHandle<()>> = self
            .shards
            .into_iter()
            .map(|shard| {
                let _ = shard.stop.send(());
                shard.thread
            })
            .collect();
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        let _ = joined.await;
    }
}
