//! `Job`: a claimed job, built in Rust straight from the claim's rows.
//!
//! Claiming a batch is a hot path (`benches/test_bench_honker.py`): building
//! one Python object per row from a tuple cost more than the claim's SQL.
//! A `Job` keeps its row as Rust data, makes Python values only when a
//! field is read, and decodes the JSON payload once, on first access.
//!
//! Invariant: a `Job` never changes its row; `ack`, `retry`, `fail` and
//! `heartbeat` act on the database through the same primitives as
//! `Queue.ack(...)` and friends, so the rules are those of
//! `docs/honker-contract.md` (False when the claim is no longer ours).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

use crate::database::Database;
use crate::ops;
use crate::transaction::Transaction;

static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The longest duration accepted, as `alkdev_storage._checks.MAX_DURATION_S`:
/// `unixepoch() + duration` must stay an INTEGER.
const MAX_DURATION_S: i64 = 10_000_000_000;

fn duration(name: &str, value: i64, minimum: i64) -> PyResult<i64> {
    if (minimum..=MAX_DURATION_S).contains(&value) {
        Ok(value)
    } else {
        Err(crate::errors::invalid_input(format!(
            "{name} must be between {minimum} and {MAX_DURATION_S} seconds, got {value}"
        )))
    }
}

/// A claimed job. `payload` is the decoded JSON, parsed on first access.
#[pyclass(frozen, module = "alkdev_storage._native", name = "Job")]
pub struct Job {
    db: Py<Database>,
    row: ops::Job,
    visibility_timeout_s: i64,
    payload: PyOnceLock<Py<PyAny>>,
}

impl Job {
    pub fn new(db: Py<Database>, row: ops::Job, visibility_timeout_s: i64) -> Self {
        Job {
            db,
            row,
            visibility_timeout_s,
            payload: PyOnceLock::new(),
        }
    }

    fn worker(&self) -> PyResult<&str> {
        self.row.worker_id.as_deref().ok_or_else(|| {
            crate::errors::invalid_input(format!("job {} is not claimed", self.row.id))
        })
    }
}

/// The native transaction behind `tx`: ours, or a wrapper holding one in
/// `_tx` (the honker-compatible `Transaction`).
pub fn native_tx<'py>(tx: Option<&Bound<'py, PyAny>>) -> PyResult<Option<Bound<'py, Transaction>>> {
    let Some(tx) = tx else { return Ok(None) };
    if tx.is_none() {
        return Ok(None);
    }
    if let Ok(ours) = tx.cast::<Transaction>() {
        return Ok(Some(ours.clone()));
    }
    match tx.getattr("_tx") {
        Ok(inner) => Ok(Some(inner.cast_into::<Transaction>()?)),
        Err(_) => Err(crate::errors::input_type(format!(
            "tx must be a transaction from db.transaction(), not {}",
            tx.get_type().name()?
        ))),
    }
}

#[pymethods]
impl Job {
    #[getter]
    fn id(&self) -> i64 {
        self.row.id
    }

    #[getter]
    fn queue_name(&self) -> &str {
        &self.row.queue
    }

    #[getter]
    fn payload(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.payload
            .get_or_try_init(py, || {
                let loads = JSON_LOADS.get_or_try_init(py, || {
                    PyModule::import(py, "json")?
                        .getattr("loads")
                        .map(Bound::unbind)
                })?;
                loads.call1(py, (&self.row.payload,))
            })
            .map(|p| p.clone_ref(py))
    }

    /// The payload as stored: JSON text.
    #[getter]
    fn raw_payload(&self) -> &str {
        &self.row.payload
    }

    #[getter]
    fn state(&self) -> &str {
        &self.row.state
    }

    #[getter]
    fn priority(&self) -> i64 {
        self.row.priority
    }

    #[getter]
    fn run_at(&self) -> i64 {
        self.row.run_at
    }

    #[getter]
    fn worker_id(&self) -> Option<&str> {
        self.row.worker_id.as_deref()
    }

    #[getter]
    fn claim_expires_at(&self) -> Option<i64> {
        self.row.claim_expires_at
    }

    #[getter]
    fn attempts(&self) -> i64 {
        self.row.attempts
    }

    #[getter]
    fn max_attempts(&self) -> i64 {
        self.row.max_attempts
    }

    #[getter]
    fn created_at(&self) -> i64 {
        self.row.created_at
    }

    #[getter]
    fn expires_at(&self) -> Option<i64> {
        self.row.expires_at
    }

    /// Live jobs have no error; dead ones are not handed out as `Job`s.
    #[getter]
    fn last_error(&self) -> Option<&str> {
        None
    }

    /// Delete the job; False if the claim expired or was taken over.
    #[pyo3(signature = (tx=None))]
    fn ack(&self, py: Python<'_>, tx: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let worker = self.worker()?;
        let tx = native_tx(tx)?;
        self.db.get().ack_job(py, self.row.id, worker, tx.as_ref())
    }

    /// Back to pending after `delay_s`; dead with `error` once the attempts
    /// are used. False if the claim is no longer ours.
    #[pyo3(signature = (delay_s=60, error="", tx=None))]
    fn retry(
        &self,
        py: Python<'_>,
        delay_s: i64,
        error: &str,
        tx: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let delay_s = duration("delay_s", delay_s, 0)?;
        let worker = self.worker()?;
        let tx = native_tx(tx)?;
        self.db
            .get()
            .retry_job(py, self.row.id, worker, delay_s, error, tx.as_ref())
    }

    /// Move the job to the dead letters with `error`.
    #[pyo3(signature = (error="", tx=None))]
    fn fail(&self, py: Python<'_>, error: &str, tx: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let worker = self.worker()?;
        let tx = native_tx(tx)?;
        self.db
            .get()
            .fail_job(py, self.row.id, worker, error, tx.as_ref())
    }

    /// Extend the claim to now + `extend_s` (default: the queue's timeout).
    #[pyo3(signature = (extend_s=None, tx=None))]
    fn heartbeat(
        &self,
        py: Python<'_>,
        extend_s: Option<i64>,
        tx: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let extend = duration("extend_s", extend_s.unwrap_or(self.visibility_timeout_s), 1)?;
        let worker = self.worker()?;
        let tx = native_tx(tx)?;
        self.db
            .get()
            .heartbeat_job(py, self.row.id, worker, extend, tx.as_ref())
    }

    fn __repr__(&self) -> String {
        format!(
            "<Job {} queue={:?} state={} attempts={}/{}>",
            self.row.id, self.row.queue, self.row.state, self.row.attempts, self.row.max_attempts
        )
    }
}
