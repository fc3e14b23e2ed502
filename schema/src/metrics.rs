//! What this node measures, through the `metrics` facade. The binary installs a Prometheus
//! recorder and serves `/metrics`; without one (tools, unit tests) every call here is free.
//!
//! Names follow Prometheus conventions: `codecrafter_` first, counters end in `_total`,
//! durations are histograms in seconds, sizes in bytes. Labels take only bounded values (a
//! route, a root field, an error code, a language, a status), never what a client chose.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

/// This node's own counts, read into gauges when `/metrics` is scraped (several servers
/// in one test process share one recorder, but each counts its own).
#[derive(Default)]
pub struct Metrics {
    pub websocket_connections: AtomicI64,
    /// Subscriptions being served, by root field.
    subscriptions: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
}

/// Every family, so `/metrics` lists each with its help from the first scrape on.
pub mod names {
    pub const HTTP_REQUESTS: &str = "codecrafter_http_requests_total";
    pub const HTTP_DURATION: &str = "codecrafter_http_request_duration_seconds";
    pub const GRAPHQL_OPERATIONS: &str = "codecrafter_graphql_operations_total";
    pub const GRAPHQL_DURATION: &str = "codecrafter_graphql_operation_duration_seconds";
    pub const WEBSOCKET_CONNECTIONS: &str = "codecrafter_websocket_connections";
    pub const WEBSOCKETS_OPENED: &str = "codecrafter_websocket_connections_opened_total";
    pub const SUBSCRIPTIONS_ACTIVE: &str = "codecrafter_subscriptions_active";
    pub const UPDATES_APPLIED: &str = "codecrafter_document_updates_total";
    pub const UPDATES_REFUSED: &str = "codecrafter_document_updates_refused_total";
    pub const UPDATE_BYTES: &str = "codecrafter_document_update_bytes_total";
    pub const LOG_COMMITS: &str = "codecrafter_document_log_commits_total";
    pub const DOCUMENTS_LOADED: &str = "codecrafter_documents_loaded";
    pub const DOCUMENT_LOADS: &str = "codecrafter_document_loads_total";
    pub const DOCUMENT_UNLOADS: &str = "codecrafter_document_unloads_total";
    pub const DOCUMENT_COMPACTIONS: &str = "codecrafter_document_compactions_total";
    pub const PRESENCE_REPLICAS: &str = "codecrafter_presence_replicas";
    pub const REDIS_CONNECTED: &str = "codecrafter_redis_connected";
    pub const REDIS_RECONNECTS: &str = realtime::REDIS_RECONNECTS;
    pub const FANOUT_LAG: &str = realtime::FANOUT_LAG;
    pub const RUN_QUEUE_DEPTH: &str = "codecrafter_run_queue_depth";
    pub const RUN_QUEUE_WAIT: &str = "codecrafter_run_queue_wait_seconds";
    pub const RUNS_STARTED: &str = "codecrafter_runs_started_total";
    pub const RUNS_FINISHED: &str = "codecrafter_runs_finished_total";
    pub const RUN_DURATION: &str = "codecrafter_run_duration_seconds";
    pub const RUN_CPU: &str = "codecrafter_run_cpu_seconds";
    pub const SANDBOX_FAILURES: &str = "codecrafter_sandbox_failures_total";
    pub const RATE_LIMITED: &str = "codecrafter_rate_limited_total";
    pub const DB_POOL_CONNECTIONS: &str = "codecrafter_db_pool_connections";
    pub const DB_POOL_MAX: &str = "codecrafter_db_pool_max_connections";
    pub const DB_POOL_ACQUIRE_WAIT: &str = "codecrafter_db_pool_acquire_wait_seconds";
    pub const RATE_LIMIT_FALLBACKS: &str = "codecrafter_rate_limit_redis_fallbacks_total";
}

use names::*;

/// Register the help text of every family (once per process; harmless again).
pub fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request (a WebSocket: until the upgrade), by route and method."
    );
    describe_counter!(
        GRAPHQL_OPERATIONS,
        "GraphQL operations, by root field, type and outcome (`ok` or the first error's code)."
    );
    describe_histogram!(
        GRAPHQL_DURATION,
        Unit::Seconds,
        "Time to execute a query or mutation (a subscription: its lifetime), by root field and type."
    );
    describe_gauge!(
        WEBSOCKET_CONNECTIONS,
        "Open graphql-ws connections on this node."
    );
    describe_counter!(WEBSOCKETS_OPENED, "graphql-ws connections accepted.");
    describe_gauge!(
        SUBSCRIPTIONS_ACTIVE,
        "Subscriptions being served, by root field."
    );
    describe_counter!(UPDATES_APPLIED, "Document updates stored by this node.");
    describe_counter!(
        LOG_COMMITS,
        "Transactions appending updates to document logs (a group commit writes every edit queued meanwhile in one: updates_total / log_commits_total is the mean group)."
    );
    describe_counter!(UPDATES_REFUSED, "Document updates refused, by error code.");
    describe_counter!(
        UPDATE_BYTES,
        Unit::Bytes,
        "Bytes of the document updates stored by this node."
    );
    describe_gauge!(
        DOCUMENTS_LOADED,
        "Project documents held in memory on this node."
    );
    describe_counter!(DOCUMENT_LOADS, "Project documents loaded into memory.");
    describe_counter!(
        DOCUMENT_UNLOADS,
        "Idle project documents dropped from memory."
    );
    describe_counter!(DOCUMENT_COMPACTIONS, "Update logs folded into a snapshot.");
    describe_gauge!(
        PRESENCE_REPLICAS,
        "Projects whose presence this node follows."
    );
    describe_gauge!(
        REDIS_CONNECTED,
        "1 while the link to the other nodes through Redis is up, 0 while it is down (absent without REDIS_URL)."
    );
    describe_counter!(
        REDIS_RECONNECTS,
        "Times the Redis link was established again after a loss."
    );
    describe_histogram!(
        FANOUT_LAG,
        Unit::Seconds,
        "Time from another node's publish to its arrival on this node, by kind of signal (document, project, run); across hosts it includes their clock difference."
    );
    describe_gauge!(RUN_QUEUE_DEPTH, "Code runs waiting for a worker.");
    describe_histogram!(
        RUN_QUEUE_WAIT,
        Unit::Seconds,
        "Time from a run's request to a worker taking it, by language."
    );
    describe_counter!(
        RUNS_STARTED,
        "Code runs this node's workers started, by language."
    );
    describe_counter!(
        RUNS_FINISHED,
        "Code runs that ended, by language and final status."
    );
    describe_histogram!(
        RUN_DURATION,
        Unit::Seconds,
        "Wall-clock time of the runs this node's workers finished, by language."
    );
    describe_histogram!(
        RUN_CPU,
        Unit::Seconds,
        "CPU time of the runs this node's workers finished, by language."
    );
    describe_counter!(
        SANDBOX_FAILURES,
        "Run attempts the sandbox could not carry out (handed back or failed)."
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused with RATE_LIMITED, by the limit that refused them."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database pool connections, by state (in_use, idle)."
    );
    describe_gauge!(DB_POOL_MAX, "The database pool's size limit.");
    describe_gauge!(
        DB_POOL_ACQUIRE_WAIT,
        Unit::Seconds,
        "How long a probe waited for a database pool connection when this scrape was taken \
         (sqlx counts no waiting tasks: this stands for them). Near zero while a connection \
         is free; it grows with the queue of requests waiting for one, up to 2 s (the probe \
         waits no longer)."
    );
    describe_counter!(
        RATE_LIMIT_FALLBACKS,
        "Rate-limit decisions (budgets, sign-in slowdown) this node took alone because Redis \
         did not answer in time; with REDIS_URL they are otherwise shared by every node."
    );
}

/// Create every family with a zero, so dashboards and alerts find them before the first
/// event (a counter with labels appears with its first label set).
pub fn register_families() {
    counter!(UPDATES_APPLIED).absolute(0);
    counter!(UPDATE_BYTES).absolute(0);
    counter!(LOG_COMMITS).absolute(0);
    counter!(DOCUMENT_LOADS).absolute(0);
    counter!(DOCUMENT_UNLOADS).absolute(0);
    counter!(DOCUMENT_COMPACTIONS).absolute(0);
    counter!(WEBSOCKETS_OPENED).absolute(0);
    counter!(REDIS_RECONNECTS).absolute(0);
    counter!(SANDBOX_FAILURES).absolute(0);
    counter!(RATE_LIMIT_FALLBACKS).absolute(0);
}

pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    counter!(HTTP_REQUESTS, "route" => route.to_owned(), "method" => method.to_owned(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route.to_owned(), "method" => method.to_owned())
        .record(elapsed.as_secs_f64());
}

pub fn graphql_operation(operation: &str, kind: &'static str, outcome: &str, elapsed: Duration) {
    counter!(GRAPHQL_OPERATIONS, "operation" => operation.to_owned(), "type" => kind, "outcome" => outcome.to_owned())
        .increment(1);
    metrics::histogram!(GRAPHQL_DURATION, "operation" => operation.to_owned(), "type" => kind)
        .record(elapsed.as_secs_f64());
}

impl Metrics {
    pub fn subscription_started(&self, field: &str) {
        *self
            .lock_subscriptions()
            .entry(field.to_owned())
            .or_default() += 1;
    }

    pub fn subscription_ended(&self, field: &str) {
        *self
            .lock_subscriptions()
            .entry(field.to_owned())
            .or_default() -= 1;
    }

    fn lock_subscriptions(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, i64>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn websocket_opened(&self) {
        self.websocket_connections.fetch_add(1, Ordering::Relaxed);
        counter!(WEBSOCKETS_OPENED).increment(1);
    }

    pub fn websocket_closed(&self) {
        self.websocket_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An `applyUpdate` of `bytes` bytes, stored or refused.
pub fn update<T>(result: &crate::error::ApiResult<T>, bytes: usize) {
    match result {
        Ok(_) => {
            counter!(UPDATES_APPLIED).increment(1);
            counter!(UPDATE_BYTES).increment(bytes as u64);
        }
        Err(error) => counter!(UPDATES_REFUSED, "code" => error.code()).increment(1),
    }
}

/// One transaction appended updates to a document's log.
pub fn log_committed() {
    counter!(LOG_COMMITS).increment(1);
}

pub fn document_loaded() {
    counter!(DOCUMENT_LOADS).increment(1);
}

pub fn document_unloaded() {
    counter!(DOCUMENT_UNLOADS).increment(1);
}

pub fn document_compacted() {
    counter!(DOCUMENT_COMPACTIONS).increment(1);
}

pub fn rate_limited(limit: &'static str) {
    counter!(RATE_LIMITED, "limit" => limit).increment(1);
}

/// A rate limit decided on this node alone: Redis did not answer in time.
pub fn rate_limit_fallback() {
    counter!(RATE_LIMIT_FALLBACKS).increment(1);
}

/// A worker took a run requested `waited` ago.
pub fn run_claimed(language: String, waited: Duration) {
    counter!(RUNS_STARTED, "language" => language.clone()).increment(1);
    metrics::histogram!(RUN_QUEUE_WAIT, "language" => language).record(waited.as_secs_f64());
}

pub fn run_finished(language: String, status: String) {
    counter!(RUNS_FINISHED, "language" => language, "status" => status).increment(1);
}

/// What a finished run took.
pub fn run_measured(language: String, wall: Duration, cpu: Duration) {
    metrics::histogram!(RUN_DURATION, "language" => language.clone()).record(wall.as_secs_f64());
    metrics::histogram!(RUN_CPU, "language" => language).record(cpu.as_secs_f64());
}

pub fn sandbox_failed() {
    counter!(SANDBOX_FAILURES).increment(1);
}

/// Longest the probe of [`DB_POOL_ACQUIRE_WAIT`] waits: a scrape must not hang on a pool
/// that is stuck (the gauge then reads this).
const ACQUIRE_PROBE_LIMIT: Duration = Duration::from_secs(2);

/// How long taking a connection from the pool took (the connection goes back at once):
/// what a request arriving now waits before its first query.
async fn acquire_wait<C, E>(acquire: impl std::future::Future<Output = Result<C, E>>) -> Duration
where
    E: std::fmt::Display,
{
    let start = std::time::Instant::now();
    match tokio::time::timeout(ACQUIRE_PROBE_LIMIT, acquire).await {
        Ok(Ok(connection)) => drop(connection),
        Ok(Err(error)) => tracing::debug!(%error, "the pool probe got no connection"),
        Err(_) => return ACQUIRE_PROBE_LIMIT,
    }
    start.elapsed()
}

/// Read the gauges that are states rather than events, just before a scrape.
pub async fn observe(services: &crate::Services) {
    // The shared gauges first: they wait (for the pool, a query), and this node's own counts
    // are best set just before the render (several nodes in one test process share a
    // recorder).
    observe_shared(&services.db, &services.bus).await;
    gauge!(WEBSOCKET_CONNECTIONS).set(
        services
            .metrics
            .websocket_connections
            .load(Ordering::Relaxed) as f64,
    );
    for (field, active) in services.metrics.lock_subscriptions().iter() {
        gauge!(SUBSCRIPTIONS_ACTIVE, "field" => field.clone()).set(*active as f64);
    }
    gauge!(DOCUMENTS_LOADED).set(services.documents.loaded_count() as f64);
    gauge!(PRESENCE_REPLICAS).set(services.presence.replica_count() as f64);
}

/// The gauges an API node and a `codecrafter worker` both have: the Redis link, the
/// database pool and the run queue.
pub async fn observe_shared(db: &sea_orm::DatabaseConnection, bus: &crate::realtime::Bus) {
    if let Some(connected) = bus.redis_connected() {
        gauge!(REDIS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
    }
    let (size, idle, max, waited) = match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            // Counted before the probe takes (and gives back) a connection.
            let (size, idle) = (pool.size(), pool.num_idle());
            let waited = acquire_wait(pool.acquire()).await;
            (size, idle, pool.options().get_max_connections(), waited)
        }
        DatabaseBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            // Counted before the probe takes (and gives back) a connection.
            let (size, idle) = (pool.size(), pool.num_idle());
            let waited = acquire_wait(pool.acquire()).await;
            (size, idle, pool.options().get_max_connections(), waited)
        }
        _ => (0, 0, 0, Duration::ZERO),
    };
    let in_use = f64::from(size) - idle as f64;
    gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(in_use.max(0.0));
    gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
    gauge!(DB_POOL_ACQUIRE_WAIT).set(waited.as_secs_f64());
    gauge!(DB_POOL_MAX).set(f64::from(max));
    let queued = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM runs WHERE status = 'QUEUED'",
        ))
        .await;
    match queued {
        Ok(Some(row)) => {
            if let Ok(n) = row.try_get::<i64>("", "n") {
                gauge!(RUN_QUEUE_DEPTH).set(n as f64);
            }
        }
        Ok(None) => {}
        Err(error) => tracing::debug!(%error, "cannot count the queued runs"),
    }
}
