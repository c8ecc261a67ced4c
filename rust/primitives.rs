//! The honker primitives on `Database`, as private methods (`_enqueue`,
//! `_claim`, ...) that `alkdev_storage.primitives` wraps in the public
//! `Queue`, `Stream`, `Listener`, lock, rate-limit and scheduler objects.
//!
//! Invariant: a write runs inside the caller's transaction when one is
//! passed (`tx=`), otherwise in its own `BEGIN IMMEDIATE` on the writer; an
//! operation of several statements inside the caller's transaction runs
//! under a savepoint, so a failure leaves the transaction as it was before
//! the call. Reads without a transaction run on a reader snapshot, never on
//! the writer. Payloads arrive as Python values and are encoded to JSON
//! text (`json.rs`) before anything is written.

use pyo3::prelude::*;
use rusqlite::Connection;

use crate::database::{commit_or_rollback, Database};
use crate::detach::{detached, detached_with};
use crate::errors::{Error, Result};
use crate::exec;
use crate::job;
use crate::json;
use crate::ops::{self, EnqueueOptions, Event, Fire, Job, Notification, Op, ScheduleUpdate};
use crate::transaction::Transaction;

type JobTuple = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    i64,
    i64,
    i64,
    Option<i64>,
);

type ScheduleTuple = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    i64,
    bool,
    i64,
);

fn job_tuple(j: Job) -> JobTuple {
    (
        j.id,
        j.queue.to_string(),
        j.payload,
        j.state.to_string(),
        j.priority,
        j.run_at,
        j.worker_id.map(|w| w.to_string()),
        j.claim_expires_at,
        j.attempts,
        j.max_attempts,
        j.created_at,
        j.expires_at,
    )
}

/// How much of an operation can fail halfway.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Steps {
    /// One statement: SQLite makes it atomic on its own.
    One,
    /// Several statements: inside a caller's transaction, wrap in a
    /// savepoint.
    Many,
}

/// The JSON text of every payload in `payloads`, encoded before any write.
fn encode_all(payloads: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    payloads.try_iter()?.map(|p| json::dumps(&p?)).collect()
}

fn in_savepoint<T>(conn: &Connection, work: impl FnOnce() -> Result<T>) -> Result<T> {
    exec::control(conn, "SAVEPOINT alk_primitive")?;
    match work() {
        Ok(v) => {
            exec::control(conn, "RELEASE alk_primitive")?;
            Ok(v)
        }
        Err(e) => {
            let _ = exec::control(conn, "ROLLBACK TO alk_primitive");
            let _ = exec::control(conn, "RELEASE alk_primitive");
            Err(e)
        }
    }
}

/// What `Job`'s methods call: the same operations as `_ack`, `_retry`...
impl Database {
    pub fn ack_job(
        &self,
        py: Python<'_>,
        job_id: i64,
        worker_id: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::One, |op| op.ack(job_id, worker_id))
    }

    pub fn retry_job(
        &self,
        py: Python<'_>,
        job_id: i64,
        worker_id: &str,
        delay_s: i64,
        error: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::Many, |op| {
            op.retry(job_id, worker_id, delay_s, error)
        })
    }

    pub fn fail_job(
        &self,
        py: Python<'_>,
        job_id: i64,
        worker_id: &str,
        error: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::Many, |op| op.fail(job_id, worker_id, error))
    }

    pub fn heartbeat_job(
        &self,
        py: Python<'_>,
        job_id: i64,
        worker_id: &str,
        extend_s: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::One, |op| {
            op.heartbeat(job_id, worker_id, extend_s)
        })
    }
}

impl Database {
    fn check_tx(&self, tx: &Transaction) -> Result<()> {
        if tx.belongs_to(&self.core) {
            Ok(())
        } else {
            Err(Error::Programming(
                "tx belongs to a different database".into(),
            ))
        }
    }

    /// Run a write in `tx`, or in a transaction of its own on the writer.
    fn write<T, F>(
        &self,
        py: Python<'_>,
        tx: Option<&Bound<'_, Transaction>>,
        steps: Steps,
        work: F,
    ) -> PyResult<T>
    where
        T: Send,
        F: for<'c> FnOnce(Op<'c>) -> Result<T> + Send,
    {
        let core = &*self.core;
        if let Some(tx) = tx {
            let tx = tx.get();
            self.check_tx(tx)?;
            return Ok(tx.with_conn(py, |c| {
                let op = Op::new(c, &core.stats);
                match steps {
                    Steps::One => work(op),
                    Steps::Many => in_savepoint(c, || work(op)),
                }
            })?);
        }
        let writer = core.acquire_writer(py)?;
        let (_writer, out) = detached_with(py, writer, |w| {
            exec::control(w, "BEGIN IMMEDIATE")?;
            match work(Op::new(w, &core.stats)) {
                Ok(v) => commit_or_rollback(w).map(|()| v),
                Err(e) => {
                    let _ = exec::control(w, "ROLLBACK");
                    Err(e)
                }
            }
        });
        Ok(out?)
    }

    /// Run a read in `tx` (seeing its uncommitted writes), or on a reader.
    fn read<T, F>(
        &self,
        py: Python<'_>,
        tx: Option<&Bound<'_, Transaction>>,
        work: F,
    ) -> PyResult<T>
    where
        T: Send,
        F: for<'c> FnOnce(Op<'c>) -> Result<T> + Send,
    {
        let core = &*self.core;
        if let Some(tx) = tx {
            let tx = tx.get();
            self.check_tx(tx)?;
            return Ok(tx.with_conn(py, |c| work(Op::new(c, &core.stats)))?);
        }
        Ok(detached(py, || {
            let conn = core.acquire_reader()?;
            let out = work(Op::new(&conn, &core.stats));
            core.release_reader(conn);
            out
        })?)
    }
}

#[pymethods]
impl Database {
    // ---------------------------------------------------------------- queues

    #[pyo3(name = "_enqueue", signature = (queue, payload, run_at, delay, priority, max_attempts, expires, tx=None))]
    #[allow(clippy::too_many_arguments)]
    fn enqueue_(
        &self,
        py: Python<'_>,
        queue: &str,
        payload: &Bound<'_, PyAny>,
        run_at: Option<i64>,
        delay: Option<i64>,
        priority: i64,
        max_attempts: i64,
        expires: Option<i64>,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<i64> {
        let payload = json::dumps(payload)?;
        let payload = payload.as_str();
        let o = EnqueueOptions {
            run_at,
            delay,
            priority,
            max_attempts,
            expires,
        };
        self.write(py, tx, Steps::One, |op| op.enqueue(queue, payload, &o))
    }

    #[pyo3(name = "_enqueue_many", signature = (queue, payloads, run_at, delay, priority, max_attempts, expires, tx=None))]
    #[allow(clippy::too_many_arguments)]
    fn enqueue_many_(
        &self,
        py: Python<'_>,
        queue: &str,
        payloads: &Bound<'_, PyAny>,
        run_at: Option<i64>,
        delay: Option<i64>,
        priority: i64,
        max_attempts: i64,
        expires: Option<i64>,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<Vec<i64>> {
        let payloads = encode_all(payloads)?;
        let o = EnqueueOptions {
            run_at,
            delay,
            priority,
            max_attempts,
            expires,
        };
        self.write(py, tx, Steps::Many, |op| {
            payloads.iter().map(|p| op.enqueue(queue, p, &o)).collect()
        })
    }

    #[pyo3(name = "_claim", signature = (queue, worker_id, n, timeout_s, tx=None))]
    fn claim_(
        slf: &Bound<'_, Self>,
        queue: &str,
        worker_id: &str,
        n: i64,
        timeout_s: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<Vec<job::Job>> {
        let py = slf.py();
        let rows = slf.get().write(py, tx, Steps::Many, |op| {
            op.claim_batch(queue, worker_id, n, timeout_s)
        })?;
        Ok(rows
            .into_iter()
            .map(|row| job::Job::new(slf.clone().unbind(), row, timeout_s))
            .collect())
    }

    #[pyo3(name = "_ack", signature = (job_id, worker_id, tx=None))]
    fn ack_(
        &self,
        py: Python<'_>,
        job_id: i64,
        worker_id: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.ack_job(py, job_id, worker_id, tx)
    }

    #[pyo3(name = "_ack_batch", signature = (ids, worker_id, tx=None))]
    fn ack_batch_(
        &self,
        py: Python<'_>,
        ids: Vec<i64>,
        worker_id: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<i64> {
        self.write(py, tx, Steps::One, |op| op.ack_batch(&ids, worker_id))
    }

    #[pyo3(name = "_retry", signature = (job_id, worker_id, delay_s, error, tx=None))]
    fn retry_(
        &self,
        py: Python<'_>,
        job_id: i64,
        worker_id: &str,
        delay_s: i64,
        error: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.retry_job(py, job_id, worker_id, delay_s, error, tx)
    }

    #[pyo3(name = "_fail", signature = (job_id, worker_id, error, tx=None))]
    fn fail_(
        &self,
        py: Python<'_>,
        job_id: i64,
        worker_id: &str,
        error: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.fail_job(py, job_id, worker_id, error, tx)
    }

    #[pyo3(name = "_heartbeat", signature = (job_id, worker_id, extend_s, tx=None))]
    fn heartbeat_(
        &self,
        py: Python<'_>,
        job_id: i64,
        worker_id: &str,
        extend_s: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.heartbeat_job(py, job_id, worker_id, extend_s, tx)
    }

    #[pyo3(name = "_cancel", signature = (job_id, tx=None))]
    fn cancel_(
        &self,
        py: Python<'_>,
        job_id: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::One, |op| op.cancel(job_id))
    }

    #[pyo3(name = "_get_job", signature = (job_id, tx=None))]
    fn get_job_(
        &self,
        py: Python<'_>,
        job_id: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<Option<JobTuple>> {
        Ok(self.read(py, tx, |op| op.get_job(job_id))?.map(job_tuple))
    }

    #[pyo3(name = "_sweep_expired", signature = (queue, tx=None))]
    fn sweep_expired_(
        &self,
        py: Python<'_>,
        queue: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<i64> {
        self.write(py, tx, Steps::Many, |op| op.sweep_expired(queue))
    }

    #[pyo3(name = "_next_claim_at", signature = (queue, tx=None))]
    fn next_claim_at_(
        &self,
        py: Python<'_>,
        queue: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<i64> {
        self.read(py, tx, |op| op.queue_next_claim_at(queue))
    }

    // --------------------------------------------------------------- streams

    #[pyo3(name = "_publish", signature = (topic, payload, key=None, tx=None))]
    fn publish_(
        &self,
        py: Python<'_>,
        topic: &str,
        payload: &Bound<'_, PyAny>,
        key: Option<&str>,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<i64> {
        let payload = json::dumps(payload)?;
        self.write(py, tx, Steps::One, |op| op.publish(topic, key, &payload))
    }

    #[pyo3(name = "_publish_many", signature = (topic, payloads, keys=None, tx=None))]
    fn publish_many_(
        &self,
        py: Python<'_>,
        topic: &str,
        payloads: &Bound<'_, PyAny>,
        keys: Option<Vec<Option<String>>>,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<Vec<i64>> {
        let payloads = encode_all(payloads)?;
        if let Some(keys) = &keys {
            if keys.len() != payloads.len() {
                return Err(crate::errors::invalid_input(format!(
                    "{} keys given for {} payloads",
                    keys.len(),
                    payloads.len()
                )));
            }
        }
        self.write(py, tx, Steps::Many, |op| {
            payloads
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let key = keys.as_ref().and_then(|k| k[i].as_deref());
                    op.publish(topic, key, p)
                })
                .collect()
        })
    }

    #[pyo3(name = "_read_since", signature = (cursors, limit, tx=None))]
    fn read_since_(
        &self,
        py: Python<'_>,
        cursors: Vec<(String, i64)>,
        limit: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<Vec<Event>> {
        self.read(py, tx, |op| op.read_since_many(&cursors, limit))
    }

    #[pyo3(name = "_save_offset", signature = (consumer, topic, offset, tx=None))]
    fn save_offset_(
        &self,
        py: Python<'_>,
        consumer: &str,
        topic: &str,
        offset: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::One, |op| {
            op.save_offset(consumer, topic, offset)
        })
    }

    #[pyo3(name = "_save_offsets", signature = (consumer, offsets, tx=None))]
    fn save_offsets_(
        &self,
        py: Python<'_>,
        consumer: &str,
        offsets: Vec<(String, i64)>,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<i64> {
        self.write(py, tx, Steps::Many, |op| {
            let mut moved = 0;
            for (topic, offset) in &offsets {
                moved += i64::from(op.save_offset(consumer, topic, *offset)?);
            }
            Ok(moved)
        })
    }

    #[pyo3(name = "_get_offset", signature = (consumer, topic, tx=None))]
    fn get_offset_(
        &self,
        py: Python<'_>,
        consumer: &str,
        topic: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<i64> {
        self.read(py, tx, |op| op.get_offset(consumer, topic))
    }

    // --------------------------------------------------------- notifications

    #[pyo3(name = "_notify", signature = (channel, payload, tx=None))]
    fn notify_(
        &self,
        py: Python<'_>,
        channel: &str,
        payload: &Bound<'_, PyAny>,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<i64> {
        let payload = json::dumps(payload)?;
        self.write(py, tx, Steps::One, |op| op.notify(channel, &payload))
    }

    #[pyo3(name = "_notifications_since")]
    fn notifications_since_(
        &self,
        py: Python<'_>,
        channel: &str,
        after_id: i64,
        limit: i64,
    ) -> PyResult<Vec<Notification>> {
        self.read(py, None, |op| {
            op.notifications_since(channel, after_id, limit)
        })
    }

    #[pyo3(name = "_notifications_head")]
    fn notifications_head_(&self, py: Python<'_>, channel: &str) -> PyResult<i64> {
        self.read(py, None, |op| op.notifications_head(channel))
    }

    #[pyo3(name = "_prune_notifications")]
    fn prune_notifications_(
        &self,
        py: Python<'_>,
        older_than_s: Option<i64>,
        max_keep: Option<i64>,
    ) -> PyResult<i64> {
        self.write(py, None, Steps::One, |op| {
            op.prune_notifications(older_than_s, max_keep)
        })
    }

    // ----------------------------------------------------------------- locks

    #[pyo3(name = "_lock_acquire", signature = (name, owner, ttl_s, tx=None))]
    fn lock_acquire_(
        &self,
        py: Python<'_>,
        name: &str,
        owner: &str,
        ttl_s: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::Many, |op| {
            op.lock_acquire(name, owner, ttl_s)
        })
    }

    #[pyo3(name = "_lock_release", signature = (name, owner, tx=None))]
    fn lock_release_(
        &self,
        py: Python<'_>,
        name: &str,
        owner: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::One, |op| op.lock_release(name, owner))
    }

    #[pyo3(name = "_lock_renew", signature = (name, owner, ttl_s, tx=None))]
    fn lock_renew_(
        &self,
        py: Python<'_>,
        name: &str,
        owner: &str,
        ttl_s: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::One, |op| op.lock_renew(name, owner, ttl_s))
    }

    #[pyo3(name = "_lock_owner", signature = (name, tx=None))]
    fn lock_owner_(
        &self,
        py: Python<'_>,
        name: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<Option<(String, i64)>> {
        self.read(py, tx, |op| op.lock_owner(name))
    }

    // ----------------------------------------------------------- rate limits

    #[pyo3(name = "_rate_limit_try", signature = (name, limit, per, tx=None))]
    fn rate_limit_try_(
        &self,
        py: Python<'_>,
        name: &str,
        limit: i64,
        per: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::One, |op| op.rate_limit_try(name, limit, per))
    }

    #[pyo3(name = "_rate_limit_sweep")]
    fn rate_limit_sweep_(&self, py: Python<'_>, older_than_s: i64) -> PyResult<i64> {
        self.write(py, None, Steps::One, |op| op.rate_limit_sweep(older_than_s))
    }

    // ------------------------------------------------------------- scheduler

    #[pyo3(name = "_scheduler_register", signature = (name, queue, cron_expr, payload, priority, expires_s, max_attempts, tx=None))]
    #[allow(clippy::too_many_arguments)]
    fn scheduler_register_(
        &self,
        py: Python<'_>,
        name: &str,
        queue: &str,
        cron_expr: &str,
        payload: &str,
        priority: i64,
        expires_s: Option<i64>,
        max_attempts: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<()> {
        self.write(py, tx, Steps::Many, |op| {
            op.scheduler_register(
                name,
                queue,
                cron_expr,
                payload,
                priority,
                expires_s,
                max_attempts,
            )
        })
    }

    #[pyo3(name = "_scheduler_unregister", signature = (name, tx=None))]
    fn scheduler_unregister_(
        &self,
        py: Python<'_>,
        name: &str,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::One, |op| op.scheduler_unregister(name))
    }

    #[pyo3(name = "_scheduler_tick", signature = (now_unix, tx=None))]
    fn scheduler_tick_(
        &self,
        py: Python<'_>,
        now_unix: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<Vec<Fire>> {
        self.write(py, tx, Steps::Many, |op| op.scheduler_tick(now_unix))
    }

    #[pyo3(name = "_scheduler_soonest", signature = (tx=None))]
    fn scheduler_soonest_(
        &self,
        py: Python<'_>,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<i64> {
        self.read(py, tx, |op| op.scheduler_soonest())
    }

    #[pyo3(name = "_scheduler_set_enabled", signature = (name, enabled, tx=None))]
    fn scheduler_set_enabled_(
        &self,
        py: Python<'_>,
        name: &str,
        enabled: bool,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        self.write(py, tx, Steps::One, |op| {
            op.scheduler_set_enabled(name, enabled)
        })
    }

    #[pyo3(name = "_scheduler_list", signature = (tx=None))]
    fn scheduler_list_(
        &self,
        py: Python<'_>,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<Vec<ScheduleTuple>> {
        let rows = self.read(py, tx, |op| op.scheduler_list())?;
        Ok(rows
            .into_iter()
            .map(|s| {
                (
                    s.name,
                    s.queue,
                    s.cron_expr,
                    s.payload,
                    s.priority,
                    s.expires_s,
                    s.next_fire_at,
                    s.enabled,
                    s.max_attempts,
                )
            })
            .collect())
    }

    /// `touch_*` tell "set to NULL" (touch with `None`) from "leave alone".
    #[pyo3(name = "_scheduler_update", signature = (name, cron_expr, payload, priority, expires_s, touch_expires, max_attempts, touch_max_attempts, tx=None))]
    #[allow(clippy::too_many_arguments)]
    fn scheduler_update_(
        &self,
        py: Python<'_>,
        name: &str,
        cron_expr: Option<&str>,
        payload: Option<&str>,
        priority: Option<i64>,
        expires_s: Option<i64>,
        touch_expires: bool,
        max_attempts: Option<i64>,
        touch_max_attempts: bool,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<bool> {
        let update = ScheduleUpdate {
            cron_expr,
            payload,
            priority,
            expires_s: touch_expires.then_some(expires_s),
            max_attempts: touch_max_attempts.then_some(max_attempts),
        };
        self.write(py, tx, Steps::Many, |op| op.scheduler_update(name, &update))
    }

    // --------------------------------------------------------------- results

    #[pyo3(name = "_result_save", signature = (job_id, value, ttl_s, tx=None))]
    fn result_save_(
        &self,
        py: Python<'_>,
        job_id: i64,
        value: &Bound<'_, PyAny>,
        ttl_s: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<()> {
        let value = json::dumps(value)?;
        self.write(py, tx, Steps::One, |op| {
            op.result_save(job_id, &value, ttl_s)
        })
    }

    #[pyo3(name = "_result_get", signature = (job_id, tx=None))]
    fn result_get_(
        &self,
        py: Python<'_>,
        job_id: i64,
        tx: Option<&Bound<'_, Transaction>>,
    ) -> PyResult<Option<String>> {
        self.read(py, tx, |op| op.result_get(job_id))
    }

    #[pyo3(name = "_result_sweep")]
    fn result_sweep_(&self, py: Python<'_>) -> PyResult<i64> {
        self.write(py, None, Steps::One, |op| op.result_sweep())
    }
}

/// Next fire time of a schedule expression strictly after `from_unix`
/// (honker's cron grammar: 5 or 6 fields, or `@every <n><s|m|h|d>`; local
/// time). Raises `ProgrammingError` for an invalid expression.
#[pyfunction]
pub fn cron_next_after(expr: &str, from_unix: i64) -> PyResult<i64> {
    Ok(ops::cron_next_after(expr, from_unix)?)
}
