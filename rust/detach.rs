//! The one place that releases the GIL or waits on a lock.
//!
//! Invariant: no code in this crate blocks (on SQLite, on the writer slot, on
//! the reader pool or on one of our mutexes) while it holds the GIL. Callers
//! convert their Python arguments first, call [`detached`], and build Python
//! results after it returns.

use pyo3::Python;

/// Run `work` with the GIL released. Other Python threads run meanwhile.
#[inline]
pub fn detached<T, F>(py: Python<'_>, work: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    py.detach(work)
}

/// Move `state` (typically a held connection) into a detached call and hand
/// it back afterwards. Connections are `Send` but not `Sync`, so they travel
/// by value rather than by reference; if `work` panics, `state` is dropped
/// during unwinding and its own `Drop` puts things right.
#[inline]
pub fn detached_with<S, T, F>(py: Python<'_>, mut state: S, work: F) -> (S, T)
where
    S: Send,
    T: Send,
    F: Send + FnOnce(&mut S) -> T,
{
    detached(py, move || {
        let out = work(&mut state);
        (state, out)
    })
}
