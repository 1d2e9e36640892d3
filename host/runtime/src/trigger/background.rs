//! The worker threads that run Redis-triggered instances: apart from the threads that answer
//! HTTP requests, and at a lower CPU priority.
//!
//! Why: Spin's Redis trigger handles a channel's messages one at a time, so under load the
//! saga's consumers always have a backlog and would take every idle moment of the CPU, and
//! on the runtime the requests use, each request queued behind their tasks. On threads of
//! their own with a nice value of 10, the operating system runs them whenever the request
//! threads do not need the cores: a lock a consumer holds is not a trap, because requests
//! wait for SQLite locks without blocking their thread, and an idle request thread lets the
//! holder run. Measured in BENCHMARKS.md. Spin keeps them apart too: `spin up` runs each
//! trigger type in a process of its own (`src/commands/up.rs`); the lower priority is this
//! host's own. What a handler sees is the same either way.

use anyhow::{Context, Result};
use tokio::runtime::{Builder, Handle, Runtime};

/// Nice value of the background threads: the scheduler gives a thread at 10 about a tenth of
/// the CPU time of one at 0 when both want it, and all of it otherwise.
const NICE: i32 = 10;

/// Name of the background threads (what `/proc/<pid>/task/*/comm` shows).
const THREAD_NAME: &str = "redis-trigger";

/// A runtime with as many worker threads as the request runtime, each at [`NICE`].
pub struct Background {
    handle: Handle,
    /// Taken on drop.
    runtime: Option<Runtime>,
}

impl Background {
    pub fn start() -> Result<Self> {
        let runtime = Builder::new_multi_thread()
            .thread_name(THREAD_NAME)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .context("cannot start the Redis trigger's worker threads")?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Background {
    /// Without waiting for the threads: the trigger is dropped inside the request runtime,
    /// where blocking is not allowed, and its tasks have ended by then.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Gives the calling thread the nice value [`NICE`]. Written by hand because the call is one
/// line of `libc`; elsewhere than Linux threads keep the default priority, since there
/// `setpriority` would apply to the whole process.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: `setpriority` touches no memory of this process. On Linux, `PRIO_PROCESS` with
    // `who = 0` names the calling thread alone. Raising one's own nice value is always
    // allowed, and a failure would only leave the thread at the default priority.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
    }
}
