//! The threads argon2 runs on: a fixed set of OS threads owned by `PasswordHashing`, not tokio's
//! shared blocking pool, so that they can run at a lower scheduling priority than the threads
//! that serve requests. On a busy machine the kernel then gives token checks the CPU first and
//! logins what is left; on an idle one, hashing still gets every core. How many hashes run and
//! wait is bounded by `PasswordHashing`'s semaphores, so the channel here never holds more jobs
//! than there are threads. Machinery, not rules: nothing here knows of the domain.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

/// Why a job got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HashPoolError {
    #[error("starting a hashing thread: {0}")]
    Start(std::io::Error),
    #[error("the hashing threads are gone")]
    Gone,
    #[error("a hashing job failed")]
    JobFailed,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct HashPool {
    jobs: Sender<Job>,
}

impl HashPool {
    /// Starts `threads` threads at `niceness` (Linux `nice`: 0 is the requests' priority, 19 the
    /// lowest; ignored elsewhere, and where the system refuses it). The threads end when the
    /// pool is dropped.
    pub fn new(threads: usize, niceness: i32) -> Result<Self, HashPoolError> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work(&queue, niceness))
                .map_err(HashPoolError::Start)?;
        }
        Ok(Self { jobs })
    }

    /// Runs `job` on one of the pool's threads and waits for its answer.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashPoolError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(job());
            }))
            .map_err(|_| HashPoolError::Gone)?;
        answered.await.map_err(|_| HashPoolError::JobFailed)
    }
}

fn work(queue: &Mutex<Receiver<Job>>, niceness: i32) {
    lower_priority(niceness);
    loop {
        let job = match queue.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return, // the pool was dropped
            },
            Err(_) => return,
        };
        // A job that panics loses its answer (its caller gets an error), not the thread.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(target_os = "linux")]
fn lower_priority(niceness: i32) {
    if niceness <= 0 {
        return;
    }
    // SAFETY: setpriority only reads its integer arguments. On Linux, PRIO_PROCESS with id 0
    // names the calling thread, so only this hashing thread is lowered.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, niceness.min(19)) } != 0;
    if failed {
        tracing::debug!("could not lower the priority of a hashing thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_niceness: i32) {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_answer() {
        let pool = HashPool::new(2, 10).unwrap();
        let answers: Vec<_> = (0..8).map(|n| pool.run(move || n * 2)).collect();
        let mut sum = 0;
        for answer in answers {
            sum += answer.await.unwrap();
        }
        assert_eq!(sum, 56);
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let pool = HashPool::new(1, 0).unwrap();
        let failed = pool.run(|| -> u32 { std::panic::resume_unwind(Box::new("boom")) });
        assert!(failed.await.is_err());
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_threads_run_at_the_lower_priority() {
        let pool = HashPool::new(1, 7).unwrap();
        // SAFETY: as above; reads the calling (hashing) thread's niceness.
        let nice = pool
            .run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
            .await
            .unwrap();
        assert_eq!(nice, 7);
    }
}
