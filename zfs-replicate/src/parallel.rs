//! Per-dataset work (planning, pruning) spread over a few threads.

use crate::error::Result;

/// How many datasets are listed at once: the kernel serves list and stats
/// calls concurrently, and a cold listing waits on metadata reads.
pub(crate) const THREADS: usize = 4;

/// `f` over `items` on up to [`THREADS`] threads; results in order,
/// or the first error in order. A thread that cannot be spawned leaves its
/// share to the calling thread.
pub(crate) fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let threads = THREADS.min(items.len());
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<R>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(item) = items.get(i) else { break };
        let r = f(item);
        results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            // Best effort: without the thread the others do its share.
            let _ = std::thread::Builder::new()
                .name("zfs-replicate".into())
                .spawn_scoped(scope, work);
        }
        work();
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| unreachable!("every item is done")))
        .collect()
}
