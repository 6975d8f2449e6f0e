//! One rayon pool for all kernels, sized from TS (default: all cores).

use crate::error::{KResult, KernelError};
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, RwLock};

static POOL: RwLock<Option<Arc<ThreadPool>>> = RwLock::new(None);

fn all_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn build(n: usize) -> KResult<Arc<ThreadPool>> {
    ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("qlora-kernel-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| KernelError::invalid(format!("threads: cannot start {n} threads: {e}")))
}

/// Resizes the pool; 0 means all cores. Calls already running keep the pool they started with.
pub fn set_threads(n: usize) -> KResult<()> {
    let n = if n == 0 { all_cores() } else { n };
    crate::error::ensure(n <= 1024, || format!("threads: {n} is more than 1024"))?;
    let pool = build(n)?;
    *POOL.write().unwrap_or_else(|p| p.into_inner()) = Some(pool);
    Ok(())
}

/// The pool, created with all cores on first use.
pub fn pool() -> Arc<ThreadPool> {
    if let Some(pool) = POOL.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        return pool.clone();
    }
    let mut slot = POOL.write().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| build(all_cores()).expect("thread pool")).clone()
}

pub fn threads() -> usize {
    pool().current_num_threads()
}

/// Runs `body(part)` for each of `parts` parts: on the pool, one part per task, or inline when there is one.
pub fn run_parts(parts: usize, body: impl Fn(usize) + Send + Sync) {
    use rayon::prelude::*;
    if parts <= 1 {
        body(0);
    } else {
        pool().install(|| (0..parts).into_par_iter().with_max_len(1).for_each(body));
    }
}
