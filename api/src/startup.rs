//! Building and running the application: the same path for `main` and the tests.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use schema::Services;
use schema::auth::revocations::RevokedSessions;
use schema::auth::tokens::TokenIssuer;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::config::{Config, Mode};
use crate::routes::{self, AppState};
use crate::{database, secrets};

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    limits: crate::config::ConnectionLimits,
    connections: crate::server::ConnectionCount,
    shutdown: tokio_util::sync::CancellationToken,
    websockets: tokio_util::task::TaskTracker,
    services: Services,
    mode: Mode,
    workers: Option<Workers>,
    grace: std::time::Duration,
}

/// Everything an API node uses: database (migrated), token issuer, bus, queue, documents,
/// presence (its in-process workers take their part, see [`WorkerServices::of`]).
pub async fn services(config: &Config) -> anyhow::Result<Services> {
    // Which toolchains are installed is found out once by running them; not on a request.
    let detect = tokio::task::spawn_blocking(|| {
        jobs::sandbox::languages();
        jobs::sandbox::isolation();
    });
    let secret = secrets::jwt_secret(config)?;
    let databases = database::connect(config).await?;
    let tokens = TokenIssuer::new(
        &secret,
        config.auth.access_token_ttl(),
        config.auth.refresh_token_ttl(),
        config.auth.refresh_reuse_grace(),
    )?;
    let revoked_sessions = match &config.redis.url {
        Some(url) => RevokedSessions::shared(
            url.expose_secret(),
            &config.redis.channel,
            tokens.revocation_ttl(),
        )?,
        None => RevokedSessions::local(tokens.revocation_ttl()),
    };
    let bus = match &config.redis.url {
        Some(url) => {
            schema::realtime::Bus::redis(
                url.expose_secret(),
                &config.redis.channel,
                config.documents.head_check(),
            )
            .await?
        }
        None => schema::realtime::Bus::local(),
    };
    let queue = queue(config).await?;
    let runs = schema::state::Runs {
        queue,
        config: config.runs.config(),
    };
    // The budgets and the sign-in slowdown share the revocations' Redis connection.
    let limits = match revoked_sessions.connection() {
        Some(conn) => schema::shared_limits::SharedLimits::redis(
            conn,
            &config.redis.channel,
            config.rate_limits.redis_timeout(),
        ),
        None => schema::shared_limits::SharedLimits::local(),
    };
    detect.await?;
    Ok(Services::new(
        databases.writes,
        tokens,
        revoked_sessions,
        bus,
        config.collab(),
        runs,
    )
    .with_reads(databases.reads)
    .with_shared_limits(limits))
}

/// The job queue: on Redis with `REDIS_URL`, else in the data directory's SQLite file.
async fn queue(config: &Config) -> anyhow::Result<jobs::queue::Queue> {
    match &config.redis.url {
        Some(url) => {
            jobs::queue::Queue::redis(url.expose_secret(), &config.workers.job_queue).await
        }
        None => {
            std::fs::create_dir_all(&config.database.data_dir).with_context(|| {
                format!(
                    "cannot create the data directory {}",
                    config.database.data_dir.display()
                )
            })?;
            jobs::queue::Queue::sqlite(&config.database.data_dir.join("jobs.db")).await
        }
    }
}

/// What code-run workers use: the database, the queue, a bus and their rules. A
/// `codecrafter worker` process builds only this: no token issuer (so no `JWT_SECRET`), no
/// document hub, no presence, no session revocations.
#[derive(Clone)]
pub struct WorkerServices {
    pub db: sea_orm::DatabaseConnection,
    pub queue: jobs::queue::Queue,
    pub bus: std::sync::Arc<schema::realtime::Bus>,
    pub config: jobs::worker::WorkerConfig,
}

impl WorkerServices {
    /// The server's own, for the workers `serve` runs in-process.
    pub fn of(services: &Services) -> Self {
        Self {
            db: services.db.clone(),
            queue: services.runs.queue.clone(),
            bus: services.bus.clone(),
            config: services.runs.config.worker(),
        }
    }

    /// A worker process's: the database (migrated), the queue, and with `REDIS_URL` a bus
    /// that publishes run events and hears only run control (cancels), never an edit,
    /// presence or project event.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let detect = tokio::task::spawn_blocking(|| {
            jobs::sandbox::languages();
            jobs::sandbox::isolation();
        });
        let db = database::connect_writer(config).await?;
        let bus = match &config.redis.url {
            Some(url) => {
                schema::realtime::Bus::redis_for_runs(url.expose_secret(), &config.redis.channel)
                    .await?
            }
            None => schema::realtime::Bus::local(),
        };
        let queue = queue(config).await?;
        detect.await?;
        Ok(Self {
            db,
            queue,
            bus,
            config: config.runs.config().worker(),
        })
    }
}

/// Workers running inside this process, and how to stop them.
pub struct Workers {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Workers {
    /// Start `config.workers.concurrency()` workers on the queue, and the reaper that takes
    /// up runs whose worker died; `observer` hears of the runs they start and end.
    pub fn start(
        services: &WorkerServices,
        observer: std::sync::Arc<dyn jobs::worker::RunObserver>,
        config: &Config,
    ) -> Self {
        let worker_id = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let isolation = jobs::sandbox::isolation();
        // Run directories and cgroups of workers that were killed before they could clean up.
        jobs::sandbox::remove_leftovers();
        let languages: Vec<String> = jobs::sandbox::languages()
            .iter()
            .filter(|l| l.available)
            .map(|l| format!("{:?}", l.language))
            .collect();
        tracing::info!(
            worker = %worker_id,
            isolation = isolation.name(),
            own_uid_per_run = jobs::sandbox::runs_as_root(),
            languages = %languages.join(", "),
            concurrency = config.workers.concurrency(),
            "code-run workers starting"
        );
        if jobs::sandbox::expedited_grace_periods() == Some(false) {
            tracing::info!(
                "runs start about 7 ms sooner on a host that expedites RCU grace periods \
                 (`echo 1 > /sys/kernel/rcu_expedited`, or boot with `rcupdate.rcu_expedited=1`)"
            );
        }
        let concurrency = config.workers.concurrency();
        let executor = jobs::worker::Executor::new(
            services.db.clone(),
            services.queue.clone(),
            services.bus.clone(),
            jobs::worker::WorkerConfig {
                sandboxes_ahead: concurrency,
                ..services.config.clone()
            },
            worker_id.clone(),
            observer,
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let reaper = tokio::spawn(executor.clone().reap_until(stopped.clone()));
        let queue = services.queue.clone();
        let mut until = stopped;
        let handle = tokio::spawn(async move {
            let shutdown = async move {
                let _ = until.wait_for(|stop| *stop).await;
            };
            if let Err(error) = queue
                .work(&worker_id, concurrency, executor.clone(), shutdown)
                .await
            {
                tracing::error!(?error, "workers failed");
            }
            reaper.abort();
            executor.close().await;
        });
        Self { stop, handle }
    }

    /// Stop taking jobs; let the runs in hand finish within `grace`. Runs still going after
    /// that are abandoned here and taken up again by another worker's reaper.
    pub async fn stop(self, grace: std::time::Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, self.handle).await.is_err() {
            tracing::warn!("runs still in progress after the grace period are handed back");
        }
    }
}

impl Application {
    /// Connect, migrate, and bind (port 0 picks a free port).
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        crate::observe::install_metrics();
        let services = services(config).await?;
        let schema = schema::build(services.clone(), &config.schema_options());
        let limits = config.connections.clone();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let websockets = tokio_util::task::TaskTracker::new();
        let router = routes::router(
            AppState {
                schema,
                services: services.clone(),
                max_ws_message_bytes: config
                    .server
                    .max_body_bytes
                    .max(config.documents.max_variables_bytes()),
                ws: routes::WsSettings {
                    init_timeout: Duration::from_secs(limits.ws_init_timeout_secs.max(1)),
                    ping_interval: Duration::from_secs(limits.ws_ping_interval_secs.max(1)),
                    stall_timeout: Duration::from_secs(limits.ws_stall_timeout_secs.max(1)),
                },
                shutdown: shutdown.clone(),
                connections: websockets.clone(),
                trusted_proxies: std::sync::Arc::new(crate::ratelimit::TrustedProxies::parse(
                    &config.rate_limits.trusted_proxies,
                )?),
                budget: crate::ratelimit::budget(
                    config.rate_limits.per_second,
                    config.rate_limits.burst,
                )?,
                selections: Default::default(),
            },
            config.server.max_body_bytes,
            Duration::from_secs(limits.request_timeout_secs.max(1)),
            routes::cors(&config.server.cors_origins)?,
        );
        let connections = crate::server::ConnectionCount::new(
            crate::server::connection_cap(&limits),
            limits.max_connections_per_ip,
        );
        let listener = TcpListener::bind(config.server.bind)
            .await
            .with_context(|| format!("could not listen on {}", config.server.bind))?;
        let workers = config.runs_workers_in_process().then(|| {
            Workers::start(
                &WorkerServices::of(&services),
                std::sync::Arc::new(schema::runs::RunMetrics),
                config,
            )
        });
        Ok(Self {
            listener,
            router,
            limits,
            connections,
            shutdown,
            websockets,
            services,
            mode: config.mode(),
            workers,
            grace: config.workers.grace(),
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serve until `shutdown` resolves, then finish in-flight requests, complete every
    /// WebSocket's operations and close it (1001), stop the workers, stop the document hub
    /// (writing its pending auto-saves) and close the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = self.shutdown.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.cancel();
        });
        crate::server::serve(
            self.listener,
            self.router,
            &self.limits,
            self.connections,
            self.shutdown.clone(),
        )
        .await;
        self.websockets.close();
        if tokio::time::timeout(Duration::from_secs(5), self.websockets.wait())
            .await
            .is_err()
        {
            tracing::warn!("WebSockets still open 5 s after the stop are dropped");
        }
        if let Some(workers) = self.workers {
            workers.stop(self.grace).await;
        }
        self.services.shutdown().await;
        self.services.db.close().await?;
        Ok(())
    }
}
