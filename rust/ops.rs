//! honker's primitives run as our own cached statements.
//!
//! Every function here has exactly the effect on `_honker_*` tables of the
//! honker-core SQL function it is named after (`honker_enqueue`,
//! `honker_claim_batch`, ...; see `docs/honker-contract.md`). None of them
//! begins or commits: the caller holds the writer inside a transaction (its
//! own or the caller's), or a reader for the pure reads. Statements go
//! through the connection's statement cache, so a steady workload compiles
//! each of them once per connection.
//!
//! The one deliberate difference is how the claim's dead-letter pre-pass
//! finds its rows: through `_alk_honker_live_exhausted`, a partial index of
//! the rows that have used their attempt budget, instead of every due row of
//! the queue. Its result is the same; its cost no longer grows with the
//! backlog.

use std::sync::Arc;

use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Row};

use crate::errors::{Error, Result};
use crate::exec::{prepare, Stats};

/// Extra index we add to honker's schema (created on open, harmless to
/// other bindings): the rows whose attempts are used up. Usually empty.
pub const EXHAUSTED_INDEX_SQL: &str = "CREATE INDEX IF NOT EXISTS _alk_honker_live_exhausted \
     ON _honker_live(queue) WHERE attempts >= max_attempts";

/// honker-core's cap on fires enqueued for one schedule in one tick.
pub const SCHEDULER_MAX_CATCHUP_FIRES: i64 = 64;

/// A connection held by the caller, with the statement-cache counters.
#[derive(Clone, Copy)]
pub struct Op<'a> {
    pub conn: &'a Connection,
    pub stats: &'a Stats,
}

/// One row of `_honker_live` (every column), as claimed or read. The
/// strings every row of a claim shares are shared, not copied.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub queue: Arc<str>,
    pub payload: String,
    pub state: Arc<str>,
    pub priority: i64,
    pub run_at: i64,
    pub worker_id: Option<Arc<str>>,
    pub claim_expires_at: Option<i64>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

const JOB_COLUMNS: &str = "id, queue, payload, state, priority, run_at, worker_id, \
     claim_expires_at, attempts, max_attempts, created_at, expires_at";

impl Job {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
        Ok(Job {
            id: r.get(0)?,
            queue: Arc::from(r.get_ref(1)?.as_str()?),
            payload: r.get(2)?,
            state: Arc::from(r.get_ref(3)?.as_str()?),
            priority: r.get(4)?,
            run_at: r.get(5)?,
            worker_id: r.get_ref(6)?.as_str_or_null()?.map(Arc::from),
            claim_expires_at: r.get(7)?,
            attempts: r.get(8)?,
            max_attempts: r.get(9)?,
            created_at: r.get(10)?,
            expires_at: r.get(11)?,
        })
    }

    /// A row returned by the claim's UPDATE (`CLAIMED_COLUMNS`), whose
    /// queue, worker and state (`[queue, worker, "processing"]`) are the
    /// claim's own.
    fn claimed(r: &Row<'_>, shared: &[Arc<str>; 3]) -> rusqlite::Result<Job> {
        let [queue, worker, processing] = shared;
        Ok(Job {
            id: r.get(0)?,
            queue: queue.clone(),
            payload: r.get(1)?,
            state: processing.clone(),
            priority: r.get(2)?,
            run_at: r.get(3)?,
            worker_id: Some(worker.clone()),
            claim_expires_at: r.get(4)?,
            attempts: r.get(5)?,
            max_attempts: r.get(6)?,
            created_at: r.get(7)?,
            expires_at: r.get(8)?,
        })
    }
}

const CLAIMED_COLUMNS: &str = "id, payload, priority, run_at, claim_expires_at, attempts, \
     max_attempts, created_at, expires_at";

/// The columns a live row keeps when it moves to `_honker_dead`.
struct Moved {
    id: i64,
    queue: String,
    payload: String,
    priority: i64,
    run_at: i64,
    max_attempts: i64,
    attempts: i64,
    created_at: i64,
}

const MOVED_COLUMNS: &str =
    "id, queue, payload, priority, run_at, max_attempts, attempts, created_at";

impl Moved {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Moved> {
        Ok(Moved {
            id: r.get(0)?,
            queue: r.get(1)?,
            payload: r.get(2)?,
            priority: r.get(3)?,
            run_at: r.get(4)?,
            max_attempts: r.get(5)?,
            attempts: r.get(6)?,
            created_at: r.get(7)?,
        })
    }
}

/// One stream event: `(offset, topic, key, payload, created_at)`.
pub type Event = (i64, String, Option<String>, String, i64);

/// One notification: `(id, channel, payload, created_at)`.
pub type Notification = (i64, String, String, i64);

/// One scheduler fire: `(name, queue, fire_at, job_id)`.
pub type Fire = (String, String, i64, i64);

/// One row of `_honker_scheduler_tasks`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub queue: String,
    pub cron_expr: String,
    pub payload: String,
    pub priority: i64,
    pub expires_s: Option<i64>,
    pub next_fire_at: i64,
    pub enabled: bool,
    pub max_attempts: i64,
}

/// Enqueue options, as `honker_enqueue` takes them.
#[derive(Debug, Clone, Copy)]
pub struct EnqueueOptions {
    pub run_at: Option<i64>,
    pub delay: Option<i64>,
    pub priority: i64,
    pub max_attempts: i64,
    pub expires: Option<i64>,
}

/// Next cron boundary strictly after `from_unix` (honker's grammar, local
/// time). A bad expression is the caller's mistake.
pub fn cron_next_after(expr: &str, from_unix: i64) -> Result<i64> {
    honker_core::cron::next_after_unix(expr, from_unix)
        .map_err(|e| Error::Value(format!("invalid schedule {expr:?}: {e}")))
}

impl<'a> Op<'a> {
    pub fn new(conn: &'a Connection, stats: &'a Stats) -> Self {
        Op { conn, stats }
    }

    fn stmt(&self, sql: &str) -> Result<CachedStatement<'a>> {
        prepare(self.conn, self.stats, sql)
    }

    /// Run a statement that changes rows; the number it changed.
    fn change(&self, sql: &str, p: impl rusqlite::Params) -> Result<i64> {
        let n = self.stmt(sql)?.execute(p).map_err(Error::run)?;
        Ok(n as i64)
    }

    fn one<T>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        self.stmt(sql)?
            .query_row(p, f)
            .optional()
            .map_err(Error::run)
    }

    fn now(&self) -> Result<i64> {
        Ok(self
            .one("SELECT unixepoch()", [], |r| r.get(0))?
            .expect("SELECT always returns a row"))
    }

    /// DELETE ... RETURNING the moved columns, then copy each row into
    /// `_honker_dead` with `error`. `error = None` binds the statement's
    /// own last_error (`?9`).
    fn move_to_dead(&self, delete_sql: &str, p: impl rusqlite::Params, error: &str) -> Result<i64> {
        let moved: Vec<Moved> = {
            let mut stmt = self.stmt(delete_sql)?;
            let rows = stmt.query_map(p, Moved::from_row).map_err(Error::run)?;
            rows.collect::<rusqlite::Result<_>>().map_err(Error::run)?
        };
        if moved.is_empty() {
            return Ok(0);
        }
        let mut insert = self.stmt(
            "INSERT INTO _honker_dead (id, queue, payload, priority, run_at, max_attempts, \
             attempts, last_error, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for m in &moved {
            insert
                .execute(params![
                    m.id,
                    m.queue,
                    m.payload,
                    m.priority,
                    m.run_at,
                    m.max_attempts,
                    m.attempts,
                    error,
                    m.created_at
                ])
                .map_err(Error::run)?;
        }
        Ok(moved.len() as i64)
    }

    // ---------------------------------------------------------------- queues

    /// `honker_enqueue`: `delay` wins over `run_at`, which wins over now;
    /// `expires` is seconds from now.
    pub fn enqueue(&self, queue: &str, payload: &str, o: &EnqueueOptions) -> Result<i64> {
        let mut stmt = self.stmt(
            "INSERT INTO _honker_live (queue, payload, run_at, priority, max_attempts, expires_at) \
             VALUES (?1, ?2, CASE WHEN ?4 IS NOT NULL THEN unixepoch() + ?4 \
                                  WHEN ?3 IS NOT NULL THEN ?3 ELSE unixepoch() END, \
                     ?5, ?6, unixepoch() + ?7)",
        )?;
        stmt.execute(params![
            queue,
            payload,
            o.run_at,
            o.delay,
            o.priority,
            o.max_attempts,
            o.expires
        ])
        .map_err(Error::run)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// `honker_claim_batch`: dead-letter the exhausted claimable rows, then
    /// claim up to `n` in `priority DESC, run_at, id` order (which is also
    /// the order returned).
    pub fn claim_batch(
        &self,
        queue: &str,
        worker_id: &str,
        n: i64,
        timeout_s: i64,
    ) -> Result<Vec<Job>> {
        self.move_to_dead(
            "DELETE FROM _honker_live INDEXED BY _alk_honker_live_exhausted \
             WHERE queue = ?1 AND attempts >= max_attempts \
               AND (expires_at IS NULL OR expires_at > unixepoch()) \
               AND ((state = 'pending' AND run_at <= unixepoch()) \
                 OR (state = 'processing' AND claim_expires_at < unixepoch())) \
             RETURNING id, queue, payload, priority, run_at, max_attempts, attempts, created_at",
            params![queue],
            "max attempts exceeded",
        )?;
        // The batch size is written into the SQL, not bound: SQLite runs this
        // statement measurably slower (about a third, at n = 100) with a
        // bound LIMIT. It is an integer, so nothing can be injected; each
        // distinct size is one more entry in the statement cache.
        let sql = format!(
            "UPDATE _honker_live \
             SET state = 'processing', worker_id = ?1, claim_expires_at = unixepoch() + ?3, \
                 attempts = attempts + 1 \
             WHERE id IN ( \
               SELECT id FROM _honker_live \
               WHERE queue = ?2 AND state IN ('pending', 'processing') \
                 AND attempts < max_attempts \
                 AND (expires_at IS NULL OR expires_at > unixepoch()) \
                 AND ((state = 'pending' AND run_at <= unixepoch()) \
                   OR (state = 'processing' AND claim_expires_at < unixepoch())) \
               ORDER BY priority DESC, run_at ASC, id ASC LIMIT {n}) \
             RETURNING {CLAIMED_COLUMNS}"
        );
        let shared: [Arc<str>; 3] = [queue.into(), worker_id.into(), "processing".into()];
        let mut jobs: Vec<Job> = {
            let mut stmt = self.stmt(&sql)?;
            let rows = stmt
                .query_map(params![worker_id, queue, timeout_s], |r| {
                    Job::claimed(r, &shared)
                })
                .map_err(Error::run)?;
            rows.collect::<rusqlite::Result<_>>().map_err(Error::run)?
        };
        // RETURNING yields rows in update order, which SQLite does not tie
        // to the subquery's ORDER BY; hand them back in claim order.
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }

    /// `honker_ack`: delete the job if our claim on it is still valid.
    pub fn ack(&self, job_id: i64, worker_id: &str) -> Result<bool> {
        let n = self.change(
            "DELETE FROM _honker_live \
             WHERE id = ?1 AND worker_id = ?2 AND claim_expires_at >= unixepoch()",
            params![job_id, worker_id],
        )?;
        Ok(n > 0)
    }

    /// `honker_ack_batch`: how many of `ids` were ours and are now deleted.
    /// One statement over the id list (as JSON, like honker's own).
    pub fn ack_batch(&self, ids: &[i64], worker_id: &str) -> Result<i64> {
        let mut list = String::with_capacity(ids.len() * 8 + 2);
        list.push('[');
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                list.push(',');
            }
            list.push_str(&id.to_string());
        }
        list.push(']');
        self.change(
            "DELETE FROM _honker_live \
             WHERE id IN (SELECT value FROM json_each(?1)) \
               AND worker_id = ?2 AND claim_expires_at >= unixepoch()",
            params![list, worker_id],
        )
    }

    /// `honker_retry`: back to pending after `delay_s`, or to the dead
    /// letters with `error` once the attempts are used up. False if the
    /// claim is not ours (any more).
    pub fn retry(&self, job_id: i64, worker_id: &str, delay_s: i64, error: &str) -> Result<bool> {
        let sql = format!(
            "SELECT {MOVED_COLUMNS} FROM _honker_live \
             WHERE id = ?1 AND worker_id = ?2 AND claim_expires_at >= unixepoch() \
               AND state = 'processing'"
        );
        let Some(row) = self.one(&sql, params![job_id, worker_id], Moved::from_row)? else {
            return Ok(false);
        };
        if row.attempts >= row.max_attempts {
            self.move_to_dead(
                &format!("DELETE FROM _honker_live WHERE id = ?1 RETURNING {MOVED_COLUMNS}"),
                params![row.id],
                error,
            )?;
        } else {
            self.change(
                "UPDATE _honker_live SET state = 'pending', run_at = unixepoch() + ?2, \
                 worker_id = NULL, claim_expires_at = NULL WHERE id = ?1",
                params![row.id, delay_s],
            )?;
        }
        Ok(true)
    }

    /// `honker_fail`: straight to the dead letters, if the claim is ours.
    pub fn fail(&self, job_id: i64, worker_id: &str, error: &str) -> Result<bool> {
        let moved = self.move_to_dead(
            &format!(
                "DELETE FROM _honker_live \
                 WHERE id = ?1 AND worker_id = ?2 AND claim_expires_at >= unixepoch() \
                 RETURNING {MOVED_COLUMNS}"
            ),
            params![job_id, worker_id],
            error,
        )?;
        Ok(moved > 0)
    }

    /// `honker_heartbeat`: extend a still-valid claim to now + `extend_s`.
    pub fn heartbeat(&self, job_id: i64, worker_id: &str, extend_s: i64) -> Result<bool> {
        let n = self.change(
            "UPDATE _honker_live SET claim_expires_at = unixepoch() + ?3 \
             WHERE id = ?1 AND worker_id = ?2 AND state = 'processing' \
               AND claim_expires_at >= unixepoch()",
            params![job_id, worker_id, extend_s],
        )?;
        Ok(n > 0)
    }

    /// `honker_cancel`: remove a pending or processing job, whoever holds it.
    pub fn cancel(&self, job_id: i64) -> Result<bool> {
        let n = self.change(
            "DELETE FROM _honker_live WHERE id = ?1 AND state IN ('pending', 'processing')",
            params![job_id],
        )?;
        Ok(n > 0)
    }

    /// `honker_get_job`: the live row, or `None` (acked, dead or unknown).
    pub fn get_job(&self, job_id: i64) -> Result<Option<Job>> {
        self.one(
            &format!("SELECT {JOB_COLUMNS} FROM _honker_live WHERE id = ?1"),
            params![job_id],
            Job::from_row,
        )
    }

    /// `honker_sweep_expired`: pending rows past `expires_at` go to the
    /// dead letters as `'expired'`.
    pub fn sweep_expired(&self, queue: &str) -> Result<i64> {
        self.move_to_dead(
            &format!(
                "DELETE FROM _honker_live \
                 WHERE queue = ?1 AND state = 'pending' AND expires_at IS NOT NULL \
                   AND expires_at <= unixepoch() \
                 RETURNING {MOVED_COLUMNS}"
            ),
            params![queue],
            "expired",
        )
    }

    /// `honker_queue_next_claim_at`: the earliest future moment a claim
    /// could succeed, or 0.
    pub fn queue_next_claim_at(&self, queue: &str) -> Result<i64> {
        Ok(self
            .one(
                "SELECT COALESCE(MIN(deadline), 0) FROM ( \
                   SELECT MIN(run_at) AS deadline FROM _honker_live \
                   WHERE queue = ?1 AND state = 'pending' AND attempts < max_attempts \
                     AND (expires_at IS NULL OR expires_at > unixepoch()) \
                     AND run_at > unixepoch() \
                   UNION ALL \
                   SELECT MIN(claim_expires_at + 1) AS deadline FROM _honker_live \
                   WHERE queue = ?1 AND state = 'processing' AND attempts < max_attempts \
                     AND (expires_at IS NULL OR expires_at > unixepoch()) \
                     AND claim_expires_at >= unixepoch())",
                params![queue],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    // --------------------------------------------------------------- streams

    /// `honker_stream_publish`: the new event's offset.
    pub fn publish(&self, topic: &str, key: Option<&str>, payload: &str) -> Result<i64> {
        self.change(
            "INSERT INTO _honker_stream (topic, key, payload) VALUES (?1, ?2, ?3)",
            params![topic, key, payload],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// `honker_stream_read_since`: events of `topic` after `offset`, oldest
    /// first.
    pub fn read_since(
        &self,
        topic: &str,
        offset: i64,
        limit: i64,
        out: &mut Vec<Event>,
    ) -> Result<()> {
        let mut stmt = self.stmt(
            "SELECT offset, topic, key, payload, created_at FROM _honker_stream \
             WHERE topic = ?1 AND offset > ?2 ORDER BY offset ASC LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![topic, offset, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(Error::run)?;
        for row in rows {
            out.push(row.map_err(Error::run)?);
        }
        Ok(())
    }

    /// Events of several topics, each after its own offset, in offset order
    /// (offsets are global across topics), at most `limit`. One statement,
    /// so one snapshot: a commit landing mid-read cannot put a later event
    /// of one topic ahead of an earlier one of another.
    pub fn read_since_many(&self, cursors: &[(String, i64)], limit: i64) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        match cursors {
            [] => {}
            [(topic, offset)] => self.read_since(topic, *offset, limit, &mut out)?,
            _ => {
                let terms = vec!["(topic = ? AND offset > ?)"; cursors.len()].join(" OR ");
                let sql = format!(
                    "SELECT offset, topic, key, payload, created_at FROM _honker_stream \
                     WHERE {terms} ORDER BY offset ASC LIMIT ?"
                );
                let mut stmt = self.stmt(&sql)?;
                let mut values: Vec<rusqlite::types::Value> =
                    Vec::with_capacity(cursors.len() * 2 + 1);
                for (topic, offset) in cursors {
                    values.push(topic.clone().into());
                    values.push((*offset).into());
                }
                values.push(limit.into());
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(values), |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .map_err(Error::run)?;
                for row in rows {
                    out.push(row.map_err(Error::run)?);
                }
            }
        }
        Ok(out)
    }

    /// `honker_stream_save_offset`: move the consumer's offset forward
    /// only. True if it moved.
    pub fn save_offset(&self, consumer: &str, topic: &str, offset: i64) -> Result<bool> {
        let n = self.change(
            "INSERT INTO _honker_stream_consumers (name, topic, offset) VALUES (?1, ?2, ?3) \
             ON CONFLICT(name, topic) DO UPDATE SET offset = excluded.offset \
               WHERE excluded.offset > _honker_stream_consumers.offset",
            params![consumer, topic, offset],
        )?;
        Ok(n > 0)
    }

    /// `honker_stream_get_offset`: the saved offset, or 0.
    pub fn get_offset(&self, consumer: &str, topic: &str) -> Result<i64> {
        Ok(self
            .one(
                "SELECT offset FROM _honker_stream_consumers WHERE name = ?1 AND topic = ?2",
                params![consumer, topic],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    // --------------------------------------------------------- notifications

    /// `notify()`: the new notification's id.
    pub fn notify(&self, channel: &str, payload: &str) -> Result<i64> {
        self.change(
            "INSERT INTO _honker_notifications (channel, payload) VALUES (?1, ?2)",
            params![channel, payload],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Notifications on `channel` after `after_id`, oldest first.
    pub fn notifications_since(
        &self,
        channel: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Notification>> {
        let mut stmt = self.stmt(
            "SELECT id, channel, payload, created_at FROM _honker_notifications \
             WHERE channel = ?1 AND id > ?2 ORDER BY id ASC LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![channel, after_id, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(Error::run)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Error::run)
    }

    /// The newest notification id on `channel`, or 0: where a new listener
    /// starts.
    pub fn notifications_head(&self, channel: &str) -> Result<i64> {
        Ok(self
            .one(
                "SELECT COALESCE(MAX(id), 0) FROM _honker_notifications WHERE channel = ?1",
                params![channel],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    /// Delete notifications older than `older_than_s` seconds, or beyond the
    /// newest `max_keep` (either condition deletes when both are given).
    pub fn prune_notifications(
        &self,
        older_than_s: Option<i64>,
        max_keep: Option<i64>,
    ) -> Result<i64> {
        self.change(
            "DELETE FROM _honker_notifications \
             WHERE (?1 IS NOT NULL AND created_at < unixepoch() - ?1) \
                OR (?2 IS NOT NULL AND id <= (SELECT id FROM _honker_notifications \
                                              ORDER BY id DESC LIMIT 1 OFFSET ?2))",
            params![older_than_s, max_keep],
        )
    }

    // ----------------------------------------------------------------- locks

    /// `honker_lock_acquire`: true if `owner` holds the lock afterwards. An
    /// expired lock is taken over; re-acquiring does not extend the TTL.
    pub fn lock_acquire(&self, name: &str, owner: &str, ttl_s: i64) -> Result<bool> {
        self.change(
            "DELETE FROM _honker_locks WHERE name = ?1 AND expires_at <= unixepoch()",
            params![name],
        )?;
        self.change(
            "INSERT OR IGNORE INTO _honker_locks (name, owner, expires_at) \
             VALUES (?1, ?2, unixepoch() + ?3)",
            params![name, owner, ttl_s],
        )?;
        let current: Option<String> = self.one(
            "SELECT owner FROM _honker_locks WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?;
        Ok(current.as_deref() == Some(owner))
    }

    /// `honker_lock_release`: true if `owner` held it.
    pub fn lock_release(&self, name: &str, owner: &str) -> Result<bool> {
        let n = self.change(
            "DELETE FROM _honker_locks WHERE name = ?1 AND owner = ?2",
            params![name, owner],
        )?;
        Ok(n > 0)
    }

    /// `honker_lock_renew`: extend to now + `ttl_s` if `owner` holds it.
    pub fn lock_renew(&self, name: &str, owner: &str, ttl_s: i64) -> Result<bool> {
        let n = self.change(
            "UPDATE _honker_locks SET expires_at = unixepoch() + ?3 WHERE name = ?1 AND owner = ?2",
            params![name, owner, ttl_s],
        )?;
        Ok(n > 0)
    }

    /// The current owner and expiry of a lock, if held and unexpired.
    pub fn lock_owner(&self, name: &str) -> Result<Option<(String, i64)>> {
        self.one(
            "SELECT owner, expires_at FROM _honker_locks \
             WHERE name = ?1 AND expires_at > unixepoch()",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    // ----------------------------------------------------------- rate limits

    /// `honker_rate_limit_try`: count one call in the current fixed window
    /// of `per` seconds, unless `limit` calls are already counted there.
    pub fn rate_limit_try(&self, name: &str, limit: i64, per: i64) -> Result<bool> {
        let n = self.change(
            "INSERT INTO _honker_rate_limits (name, window_start, count) \
             VALUES (?1, (unixepoch() / ?2) * ?2, 1) \
             ON CONFLICT(name, window_start) DO UPDATE SET count = count + 1 WHERE count < ?3",
            params![name, per, limit],
        )?;
        Ok(n > 0)
    }

    /// `honker_rate_limit_sweep`: drop windows older than `older_than_s`.
    pub fn rate_limit_sweep(&self, older_than_s: i64) -> Result<i64> {
        self.change(
            "DELETE FROM _honker_rate_limits WHERE window_start < unixepoch() - ?1",
            params![older_than_s],
        )
    }

    // ------------------------------------------------------------- scheduler

    /// `honker_scheduler_register`: upsert by name; first fire is the next
    /// boundary after now.
    #[allow(clippy::too_many_arguments)]
    pub fn scheduler_register(
        &self,
        name: &str,
        queue: &str,
        cron_expr: &str,
        payload: &str,
        priority: i64,
        expires_s: Option<i64>,
        max_attempts: i64,
    ) -> Result<()> {
        let next = cron_next_after(cron_expr, self.now()?)?;
        self.change(
            "INSERT INTO _honker_scheduler_tasks \
               (name, queue, cron_expr, payload, priority, expires_s, next_fire_at, max_attempts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT(name) DO UPDATE SET queue = excluded.queue, \
               cron_expr = excluded.cron_expr, payload = excluded.payload, \
               priority = excluded.priority, expires_s = excluded.expires_s, \
               next_fire_at = excluded.next_fire_at, max_attempts = excluded.max_attempts",
            params![
                name,
                queue,
                cron_expr,
                payload,
                priority,
                expires_s,
                next,
                max_attempts.max(1)
            ],
        )?;
        Ok(())
    }

    pub fn scheduler_unregister(&self, name: &str) -> Result<bool> {
        let n = self.change(
            "DELETE FROM _honker_scheduler_tasks WHERE name = ?1",
            params![name],
        )?;
        Ok(n > 0)
    }

    /// `honker_scheduler_tick`: enqueue one job per boundary passed (at
    /// most 64 per task; the rest of a backlog is skipped) and advance.
    pub fn scheduler_tick(&self, now_unix: i64) -> Result<Vec<Fire>> {
        let due: Vec<Schedule> = {
            let mut stmt = self.stmt(
                "SELECT name, queue, cron_expr, payload, priority, expires_s, next_fire_at, \
                        enabled, COALESCE(max_attempts, 3) \
                 FROM _honker_scheduler_tasks WHERE next_fire_at <= ?1 AND enabled = 1",
            )?;
            let rows = stmt
                .query_map(params![now_unix], schedule_from_row)
                .map_err(Error::run)?;
            rows.collect::<rusqlite::Result<_>>().map_err(Error::run)?
        };
        let mut fires = Vec::new();
        for task in due {
            let mut next = task.next_fire_at;
            let mut fired = 0;
            while next <= now_unix {
                if fired >= SCHEDULER_MAX_CATCHUP_FIRES {
                    next = cron_next_after(&task.cron_expr, now_unix)?;
                    break;
                }
                let options = EnqueueOptions {
                    run_at: None,
                    delay: None,
                    priority: task.priority,
                    max_attempts: task.max_attempts,
                    expires: task.expires_s,
                };
                let job_id = self.enqueue(&task.queue, &task.payload, &options)?;
                fires.push((task.name.clone(), task.queue.clone(), next, job_id));
                fired += 1;
                next = cron_next_after(&task.cron_expr, next)?;
            }
            self.change(
                "UPDATE _honker_scheduler_tasks SET next_fire_at = ?2 WHERE name = ?1",
                params![task.name, next],
            )?;
        }
        Ok(fires)
    }

    /// `honker_scheduler_soonest`: the earliest enabled fire time, or 0.
    pub fn scheduler_soonest(&self) -> Result<i64> {
        Ok(self
            .one(
                "SELECT COALESCE(MIN(next_fire_at), 0) FROM _honker_scheduler_tasks \
                 WHERE enabled = 1",
                [],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    /// `honker_scheduler_pause` / `_resume`: true if the flag changed.
    pub fn scheduler_set_enabled(&self, name: &str, enabled: bool) -> Result<bool> {
        let n = self.change(
            "UPDATE _honker_scheduler_tasks SET enabled = ?2 WHERE name = ?1 AND enabled = ?3",
            params![name, i64::from(enabled), i64::from(!enabled)],
        )?;
        Ok(n > 0)
    }

    /// `honker_scheduler_list`: every schedule, by name.
    pub fn scheduler_list(&self) -> Result<Vec<Schedule>> {
        let mut stmt = self.stmt(
            "SELECT name, queue, cron_expr, payload, priority, expires_s, next_fire_at, \
                    enabled, COALESCE(max_attempts, 3) \
             FROM _honker_scheduler_tasks ORDER BY name",
        )?;
        let rows = stmt.query_map([], schedule_from_row).map_err(Error::run)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Error::run)
    }

    /// `honker_scheduler_update`: change the given fields (`Some(None)`
    /// clears a nullable one); a new expression recomputes the next fire
    /// from now. False if there is no such schedule or nothing to change.
    pub fn scheduler_update(&self, name: &str, u: &ScheduleUpdate<'_>) -> Result<bool> {
        let exists = self
            .one(
                "SELECT 1 FROM _honker_scheduler_tasks WHERE name = ?1",
                params![name],
                |_| Ok(()),
            )?
            .is_some();
        let any = u.cron_expr.is_some()
            || u.payload.is_some()
            || u.priority.is_some()
            || u.expires_s.is_some()
            || u.max_attempts.is_some();
        if !exists || !any {
            return Ok(false);
        }
        let next = match u.cron_expr {
            Some(expr) => Some(cron_next_after(expr, self.now()?)?),
            None => None,
        };
        self.change(
            "UPDATE _honker_scheduler_tasks SET \
               payload = CASE WHEN ?2 THEN ?3 ELSE payload END, \
               priority = CASE WHEN ?4 THEN ?5 ELSE priority END, \
               expires_s = CASE WHEN ?6 THEN ?7 ELSE expires_s END, \
               max_attempts = CASE WHEN ?8 THEN ?9 ELSE max_attempts END, \
               cron_expr = CASE WHEN ?10 THEN ?11 ELSE cron_expr END, \
               next_fire_at = CASE WHEN ?10 THEN ?12 ELSE next_fire_at END \
             WHERE name = ?1",
            params![
                name,
                u.payload.is_some(),
                u.payload,
                u.priority.is_some(),
                u.priority,
                u.expires_s.is_some(),
                u.expires_s.flatten(),
                u.max_attempts.is_some(),
                u.max_attempts.map(|m| m.unwrap_or(3).max(1)),
                u.cron_expr.is_some(),
                u.cron_expr,
                next
            ],
        )?;
        Ok(true)
    }

    // --------------------------------------------------------------- results

    /// `honker_result_save`: upsert; `ttl_s <= 0` keeps it forever.
    pub fn result_save(&self, job_id: i64, value: &str, ttl_s: i64) -> Result<()> {
        self.change(
            "INSERT INTO _honker_results (job_id, value, expires_at) \
             VALUES (?1, ?2, CASE WHEN ?3 > 0 THEN unixepoch() + ?3 END) \
             ON CONFLICT(job_id) DO UPDATE SET value = excluded.value, \
               expires_at = excluded.expires_at",
            params![job_id, value, ttl_s],
        )?;
        Ok(())
    }

    /// `honker_result_get`: the stored value, unless missing or expired.
    pub fn result_get(&self, job_id: i64) -> Result<Option<String>> {
        Ok(self
            .one(
                "SELECT value FROM _honker_results \
                 WHERE job_id = ?1 AND (expires_at IS NULL OR expires_at > unixepoch())",
                params![job_id],
                |r| r.get::<_, Option<String>>(0),
            )?
            .flatten())
    }

    /// `honker_result_sweep`: delete expired results.
    pub fn result_sweep(&self) -> Result<i64> {
        self.change(
            "DELETE FROM _honker_results WHERE expires_at IS NOT NULL AND expires_at <= unixepoch()",
            [],
        )
    }
}

/// Fields to change in `scheduler_update`; `None` leaves a field alone.
#[derive(Debug, Default)]
pub struct ScheduleUpdate<'a> {
    pub cron_expr: Option<&'a str>,
    pub payload: Option<&'a str>,
    pub priority: Option<i64>,
    pub expires_s: Option<Option<i64>>,
    pub max_attempts: Option<Option<i64>>,
}

fn schedule_from_row(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        name: r.get(0)?,
        queue: r.get(1)?,
        cron_expr: r.get(2)?,
        payload: r.get(3)?,
        priority: r.get(4)?,
        expires_s: r.get(5)?,
        next_fire_at: r.get(6)?,
        enabled: r.get::<_, i64>(7)? != 0,
        max_attempts: r.get(8)?,
    })
}
