//! The one typed configuration, read once at start-up from flags and environment.
//!
//! One group per concern, each flattened into the command line; every default is a named
//! constant on its group, used both by clap and by the group's `Default` (what tests and
//! tools start from, see [`Config::embedded`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

#[derive(Parser, Debug)]
#[command(
    name = "codecrafter",
    version,
    about = "Real-time collaborative code editing backend"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Serve the GraphQL API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) and exit.
    PrintSchema,
    /// Run code-run workers only (production: any number of these, next to the API nodes).
    Worker,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting, by group.
#[derive(Args, Debug, Clone, Default)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub connections: ConnectionLimits,
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub rate_limits: RateLimitSettings,
    #[command(flatten)]
    pub redis: RedisSettings,
    #[command(flatten)]
    pub documents: DocumentSettings,
    #[command(flatten)]
    pub presence: PresenceSettings,
    #[command(flatten)]
    pub runs: RunSettings,
    #[command(flatten)]
    pub workers: WorkerSettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
}

/// The HTTP endpoint: address, request size, introspection, browsers' origins.
#[derive(Args, Debug, Clone)]
pub struct ServerSettings {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value_t = ServerSettings::BIND, global = true)]
    pub bind: SocketAddr,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = ServerSettings::MAX_BODY_BYTES, global = true)]
    pub max_body_bytes: usize,

    /// Answer introspection (`__schema`, `__type`), as GraphiQL and codegen tools need.
    #[arg(
        long,
        env = "INTROSPECTION",
        default_value_t = ServerSettings::INTROSPECTION,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub introspection: bool,

    /// Origins (`scheme://host[:port]`, comma-separated) whose pages may call the API from a
    /// browser, sending `Authorization` and `Content-Type`; `*` allows any origin.
    #[arg(
        long,
        env = "CORS_ORIGINS",
        value_delimiter = ',',
        default_value = ServerSettings::CORS_ORIGINS,
        global = true
    )]
    pub cors_origins: Vec<String>,
}

impl ServerSettings {
    pub const BIND: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        8080,
    ));
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    pub const INTROSPECTION: bool = true;
    /// Frontends in development (Vite's dev and preview servers, the usual port 3000); pages
    /// the binary serves itself are same-origin and need no entry.
    pub const CORS_ORIGINS: &str = "http://localhost:5173,http://127.0.0.1:5173,\
http://localhost:4173,http://127.0.0.1:4173,http://localhost:3000,http://127.0.0.1:3000";
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: Self::BIND,
            max_body_bytes: Self::MAX_BODY_BYTES,
            introspection: Self::INTROSPECTION,
            cors_origins: Self::CORS_ORIGINS.split(',').map(str::to_owned).collect(),
        }
    }
}

/// Where the data lives.
#[derive(Args, Debug, Clone)]
pub struct DatabaseSettings {
    /// PostgreSQL URL (production mode). Without it: embedded mode, SQLite in the data dir.
    #[arg(id = "database_url", long = "database-url", env = "DATABASE_URL", hide_env_values = true, value_parser = secret, global = true)]
    pub url: Option<SecretString>,

    /// Where embedded mode keeps its database and generated key.
    #[arg(long, env = "CODECRAFTER_DATA_DIR", default_value = DatabaseSettings::DATA_DIR, global = true)]
    pub data_dir: PathBuf,

    /// Connection pool size for PostgreSQL; with SQLite, the most read-only connections that
    /// queries read through beside the one writer connection.
    #[arg(
        id = "database_max_connections",
        long = "database-max-connections",
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = DatabaseSettings::MAX_CONNECTIONS,
        global = true
    )]
    pub max_connections: u32,
}

impl DatabaseSettings {
    pub const DATA_DIR: &str = "./codecrafter-data";
    pub const MAX_CONNECTIONS: u32 = 10;
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            data_dir: PathBuf::from(Self::DATA_DIR),
            max_connections: Self::MAX_CONNECTIONS,
        }
    }
}

/// Tokens: the signing key and lifetimes.
#[derive(Args, Debug, Clone)]
pub struct AuthSettings {
    /// Key for signing access tokens, at least 32 characters. Required with DATABASE_URL;
    /// in embedded mode one is generated and kept in the data dir when unset.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = secret, global = true)]
    pub jwt_secret: Option<SecretString>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "ACCESS_TOKEN_TTL_SECS", default_value_t = AuthSettings::ACCESS_TOKEN_TTL_SECS, global = true)]
    pub access_token_ttl_secs: u64,

    /// Lifetime of refresh tokens, in days.
    #[arg(long, env = "REFRESH_TOKEN_TTL_DAYS", default_value_t = AuthSettings::REFRESH_TOKEN_TTL_DAYS, global = true)]
    pub refresh_token_ttl_days: u64,

    /// Seconds after a refresh token was used during which presenting it again (another tab
    /// refreshing at the same moment) gets the same new pair instead of ending the session.
    /// 0 treats every second use as reuse.
    #[arg(long, env = "REFRESH_REUSE_GRACE_SECS", default_value_t = AuthSettings::REFRESH_REUSE_GRACE_SECS, global = true)]
    pub refresh_reuse_grace_secs: u64,
}

impl AuthSettings {
    pub const ACCESS_TOKEN_TTL_SECS: u64 = 15 * 60;
    pub const REFRESH_TOKEN_TTL_DAYS: u64 = 30;
    pub const REFRESH_REUSE_GRACE_SECS: u64 = 10;

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    pub fn refresh_token_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_days * 24 * 60 * 60)
    }

    pub fn refresh_reuse_grace(&self) -> Duration {
        Duration::from_secs(self.refresh_reuse_grace_secs)
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            access_token_ttl_secs: Self::ACCESS_TOKEN_TTL_SECS,
            refresh_token_ttl_days: Self::REFRESH_TOKEN_TTL_DAYS,
            refresh_reuse_grace_secs: Self::REFRESH_REUSE_GRACE_SECS,
        }
    }
}

/// Request budgets (GCRA): per client address on `/graphql`, stricter per address for the
/// operations that guess or create credentials, per user for repeated writes.
#[derive(Args, Debug, Clone)]
pub struct RateLimitSettings {
    /// Requests (HTTP, WebSocket upgrades) one address may send to `/graphql` per second.
    #[arg(long = "rate-limit-per-second", env = "RATE_LIMIT_PER_SECOND", default_value_t = RateLimitSettings::PER_SECOND, global = true)]
    pub per_second: u32,

    /// Requests one address may send at once above that rate.
    #[arg(long = "rate-limit-burst", env = "RATE_LIMIT_BURST", default_value_t = RateLimitSettings::BURST, global = true)]
    pub burst: u32,

    /// signUp, signIn, refreshToken, changePassword and acceptInvite one address may call
    /// per minute (after the burst).
    #[arg(long = "rate-limit-auth-per-minute", env = "RATE_LIMIT_AUTH_PER_MINUTE", default_value_t = RateLimitSettings::AUTH_PER_MINUTE, global = true)]
    pub auth_per_minute: u32,

    #[arg(long = "rate-limit-auth-burst", env = "RATE_LIMIT_AUTH_BURST", default_value_t = RateLimitSettings::AUTH_BURST, global = true)]
    pub auth_burst: u32,

    /// createProject, sendMessage and runCode one user may call per minute, each.
    #[arg(long = "rate-limit-writes-per-minute", env = "RATE_LIMIT_WRITES_PER_MINUTE", default_value_t = RateLimitSettings::WRITES_PER_MINUTE, global = true)]
    pub writes_per_minute: u32,

    #[arg(long = "rate-limit-writes-burst", env = "RATE_LIMIT_WRITES_BURST", default_value_t = RateLimitSettings::WRITES_BURST, global = true)]
    pub writes_burst: u32,

    /// applyUpdate calls one user may make per second.
    #[arg(long = "rate-limit-updates-per-second", env = "RATE_LIMIT_UPDATES_PER_SECOND", default_value_t = RateLimitSettings::UPDATES_PER_SECOND, global = true)]
    pub updates_per_second: u32,

    #[arg(long = "rate-limit-updates-burst", env = "RATE_LIMIT_UPDATES_BURST", default_value_t = RateLimitSettings::UPDATES_BURST, global = true)]
    pub updates_burst: u32,

    /// With REDIS_URL: how long, in milliseconds, a budget or sign-in check waits for Redis
    /// before this node decides alone (and does for a second).
    #[arg(long = "rate-limit-redis-timeout-ms", env = "RATE_LIMIT_REDIS_TIMEOUT_MS", default_value_t = RateLimitSettings::REDIS_TIMEOUT_MS, global = true)]
    pub redis_timeout_ms: u64,

    /// Proxies (addresses or CIDR ranges, comma-separated) whose `X-Forwarded-For` or
    /// `Forwarded` header names the client; from anybody else those headers are ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', global = true)]
    pub trusted_proxies: Vec<String>,
}

impl RateLimitSettings {
    pub const PER_SECOND: u32 = 50;
    pub const BURST: u32 = 200;
    pub const AUTH_PER_MINUTE: u32 = 10;
    pub const AUTH_BURST: u32 = 10;
    pub const WRITES_PER_MINUTE: u32 = 60;
    pub const WRITES_BURST: u32 = 30;
    pub const UPDATES_PER_SECOND: u32 = 100;
    pub const UPDATES_BURST: u32 = 500;
    pub const REDIS_TIMEOUT_MS: u64 = 100;

    /// How long a shared budget check waits for Redis.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }

    /// The schema's budgets.
    pub fn budgets(&self) -> schema::budgets::BudgetSettings {
        schema::budgets::BudgetSettings {
            auth_per_minute: self.auth_per_minute,
            auth_burst: self.auth_burst,
            writes_per_minute: self.writes_per_minute,
            writes_burst: self.writes_burst,
            updates_per_second: self.updates_per_second,
            updates_burst: self.updates_burst,
        }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_second: Self::PER_SECOND,
            burst: Self::BURST,
            auth_per_minute: Self::AUTH_PER_MINUTE,
            auth_burst: Self::AUTH_BURST,
            writes_per_minute: Self::WRITES_PER_MINUTE,
            writes_burst: Self::WRITES_BURST,
            updates_per_second: Self::UPDATES_PER_SECOND,
            updates_burst: Self::UPDATES_BURST,
            redis_timeout_ms: Self::REDIS_TIMEOUT_MS,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Redis, which joins API nodes and workers into one deployment.
#[derive(Args, Debug, Clone)]
pub struct RedisSettings {
    /// Redis URL (production): fan-out between API nodes and the job queue. Without it, one
    /// node with in-process broadcast. A node starts and serves without Redis reachable, and
    /// connects when it is.
    #[arg(id = "redis_url", long = "redis-url", env = "REDIS_URL", hide_env_values = true, value_parser = secret, global = true)]
    pub url: Option<SecretString>,

    /// The Redis pub/sub channel the nodes of one deployment share.
    #[arg(id = "redis_channel", long = "redis-channel", env = "REDIS_CHANNEL", default_value = RedisSettings::CHANNEL, global = true)]
    pub channel: String,
}

impl RedisSettings {
    pub const CHANNEL: &str = "codecrafter";
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            channel: Self::CHANNEL.to_owned(),
        }
    }
}

/// Live documents: sizes, compaction, unloading, autosave, catching up between nodes.
#[derive(Args, Debug, Clone)]
pub struct DocumentSettings {
    /// Largest Loro update `applyUpdate` accepts, in bytes.
    #[arg(long, env = "MAX_UPDATE_BYTES", default_value_t = DocumentSettings::MAX_UPDATE_BYTES, global = true)]
    pub max_update_bytes: usize,

    /// Largest file, in bytes.
    #[arg(long, env = "MAX_FILE_BYTES", default_value_t = DocumentSettings::MAX_FILE_BYTES, global = true)]
    pub max_file_bytes: usize,

    /// Most files in one project.
    #[arg(long, env = "MAX_FILES_PER_PROJECT", default_value_t = DocumentSettings::MAX_FILES, global = true)]
    pub max_files: usize,

    /// Fold a document's update log into a snapshot after this many updates.
    #[arg(long, env = "COMPACT_AFTER_UPDATES", default_value_t = DocumentSettings::COMPACT_AFTER_UPDATES, global = true)]
    pub compact_after_updates: u32,

    /// Seconds a document stays idle before it is compacted and dropped from memory.
    #[arg(long = "document-idle-secs", env = "DOCUMENT_IDLE_SECS", default_value_t = DocumentSettings::IDLE_SECS, global = true)]
    pub idle_secs: u64,

    /// Seconds a changed document stays idle before an automatic checkpoint ("Auto-save").
    #[arg(long, env = "AUTOSAVE_IDLE_SECS", default_value_t = DocumentSettings::AUTOSAVE_IDLE_SECS, global = true)]
    pub autosave_idle_secs: u64,

    /// With REDIS_URL: how often, in milliseconds, a node compares the documents it holds
    /// with the database, to catch up on updates Redis never delivered (a writer's node that
    /// died before publishing, an outage). Such an update is late by at most twice this.
    /// 0 turns the check off.
    #[arg(long = "document-head-check-ms", env = "DOCUMENT_HEAD_CHECK_MS", default_value_t = DocumentSettings::HEAD_CHECK_MS, global = true)]
    pub head_check_ms: u64,

    /// How many updates a subscriber may fall behind (a slow client, a busy node) before it
    /// is sent a resync from the version it holds instead; what a document's feed keeps.
    #[arg(long = "document-subscriber-queue", env = "DOCUMENT_SUBSCRIBER_QUEUE", default_value_t = DocumentSettings::SUBSCRIBER_QUEUE, value_parser = clap::value_parser!(u32).range(1..=65536), global = true)]
    pub subscriber_queue: u32,
}

impl DocumentSettings {
    pub const MAX_UPDATE_BYTES: usize = 1024 * 1024;
    pub const MAX_FILE_BYTES: usize = 1024 * 1024;
    pub const MAX_FILES: usize = 1000;
    pub const COMPACT_AFTER_UPDATES: u32 = 500;
    pub const IDLE_SECS: u64 = 120;
    pub const AUTOSAVE_IDLE_SECS: u64 = 600;
    pub const HEAD_CHECK_MS: u64 = 1000;
    pub const SUBSCRIBER_QUEUE: u32 = 128;

    /// How often documents are checked against the database (multi-node only).
    pub fn head_check(&self) -> Option<Duration> {
        (self.head_check_ms > 0).then(|| Duration::from_millis(self.head_check_ms))
    }

    /// The largest `variables` an `applyUpdate` needs: its update, in base64, and room.
    pub fn max_variables_bytes(&self) -> usize {
        self.max_update_bytes / 3 * 4 + 64 * 1024
    }
}

impl Default for DocumentSettings {
    fn default() -> Self {
        Self {
            max_update_bytes: Self::MAX_UPDATE_BYTES,
            max_file_bytes: Self::MAX_FILE_BYTES,
            max_files: Self::MAX_FILES,
            compact_after_updates: Self::COMPACT_AFTER_UPDATES,
            idle_secs: Self::IDLE_SECS,
            autosave_idle_secs: Self::AUTOSAVE_IDLE_SECS,
            head_check_ms: Self::HEAD_CHECK_MS,
            subscriber_queue: Self::SUBSCRIBER_QUEUE,
        }
    }
}

/// Who is here.
#[derive(Args, Debug, Clone)]
pub struct PresenceSettings {
    /// Seconds without an update or heartbeat before a client leaves presence.
    #[arg(long = "presence-ttl-secs", env = "PRESENCE_TTL_SECS", default_value_t = PresenceSettings::TTL_SECS, global = true)]
    pub ttl_secs: u64,
}

impl PresenceSettings {
    pub const TTL_SECS: u64 = 30;
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self {
            ttl_secs: Self::TTL_SECS,
        }
    }
}

/// What a code run may ask for, and how often.
#[derive(Args, Debug, Clone)]
pub struct RunSettings {
    /// Code runs one user may start per minute.
    #[arg(long, env = "RUNS_PER_MINUTE", default_value_t = RunSettings::RUNS_PER_MINUTE, global = true)]
    pub runs_per_minute: u32,

    /// Most wall-clock seconds a run may ask for (the default is 10).
    #[arg(long, env = "RUN_MAX_WALL_SECS", default_value_t = RunSettings::MAX_WALL_SECS, global = true)]
    pub run_max_wall_secs: u64,

    /// Most memory a run may ask for, in MiB (the default is 256).
    #[arg(long, env = "RUN_MAX_MEMORY_MB", default_value_t = RunSettings::MAX_MEMORY_MB, global = true)]
    pub run_max_memory_mb: u64,

    /// The bubblewrap executable of the sandbox.
    #[arg(long, env = "SANDBOX_BWRAP", default_value = RunSettings::SANDBOX_BWRAP, global = true)]
    pub sandbox_bwrap: PathBuf,
}

impl RunSettings {
    pub const RUNS_PER_MINUTE: u32 = schema::runs::RunsConfig::RUNS_PER_MINUTE;
    pub const MAX_WALL_SECS: u64 = jobs::limits::MAX_WALL_MS / 1000;
    pub const MAX_MEMORY_MB: u64 = jobs::limits::MAX_MEMORY_BYTES / jobs::limits::MIB;
    pub const SANDBOX_BWRAP: &str = schema::runs::RunsConfig::BWRAP;

    /// The rules of code runs.
    pub fn config(&self) -> schema::runs::RunsConfig {
        let mut max = schema::runs::RunLimits::MAX;
        max.wall_ms = self.run_max_wall_secs.max(1) * 1000;
        max.memory_bytes = self.run_max_memory_mb.max(16) * jobs::limits::MIB;
        let default = schema::runs::RunLimits::DEFAULT;
        schema::runs::RunsConfig {
            runs_per_minute: self.runs_per_minute.max(1),
            default_limits: schema::runs::RunLimits {
                wall_ms: default.wall_ms.min(max.wall_ms),
                memory_bytes: default.memory_bytes.min(max.memory_bytes),
                ..default
            },
            max_limits: max,
            bwrap: self.sandbox_bwrap.clone(),
            ..schema::runs::RunsConfig::default()
        }
    }
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            runs_per_minute: Self::RUNS_PER_MINUTE,
            run_max_wall_secs: Self::MAX_WALL_SECS,
            run_max_memory_mb: Self::MAX_MEMORY_MB,
            sandbox_bwrap: PathBuf::from(Self::SANDBOX_BWRAP),
        }
    }
}

/// The processes that execute runs.
#[derive(Args, Debug, Clone)]
pub struct WorkerSettings {
    /// Runs a worker process executes at once (default: the number of cores).
    #[arg(long = "worker-concurrency", env = "WORKER_CONCURRENCY", global = true)]
    pub concurrency: Option<usize>,

    /// Run workers inside `serve` (the default in embedded mode, i.e. without REDIS_URL).
    #[arg(long = "in-process-workers", env = "IN_PROCESS_WORKERS", global = true)]
    pub in_process: Option<bool>,

    /// Seconds a stopping worker lets its runs finish before handing them back.
    #[arg(long = "worker-grace-secs", env = "WORKER_GRACE_SECS", default_value_t = WorkerSettings::GRACE_SECS, global = true)]
    pub grace_secs: u64,

    /// Where `codecrafter worker` serves `/metrics` and `/healthz`.
    #[arg(long = "worker-metrics-bind", env = "WORKER_METRICS_BIND", default_value_t = WorkerSettings::METRICS_BIND, global = true)]
    pub metrics_bind: SocketAddr,

    /// The Redis list the job queue uses (production).
    #[arg(long, env = "JOB_QUEUE", default_value = WorkerSettings::JOB_QUEUE, global = true)]
    pub job_queue: String,
}

impl WorkerSettings {
    pub const GRACE_SECS: u64 = 30;
    pub const METRICS_BIND: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        9091,
    ));
    pub const JOB_QUEUE: &str = "codecrafter-runs";

    /// How many runs one worker process executes at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
            .max(1)
    }

    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_secs)
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: None,
            in_process: None,
            grace_secs: Self::GRACE_SECS,
            metrics_bind: Self::METRICS_BIND,
            job_queue: Self::JOB_QUEUE.to_owned(),
        }
    }
}

/// Logs (and, later in this file's life, metrics and traces).
#[derive(Args, Debug, Clone)]
pub struct TelemetrySettings {
    /// Log filter, in `tracing` directive syntax.
    #[arg(long = "log", env = "RUST_LOG", default_value = TelemetrySettings::LOG, global = true)]
    pub log_filter: String,

    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = TelemetrySettings::LOG_FORMAT, global = true)]
    pub log_format: LogFormat,
}

impl TelemetrySettings {
    pub const LOG: &str = "info,sqlx=warn,sea_orm=warn";
    pub const LOG_FORMAT: LogFormat = LogFormat::Text;
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_filter: Self::LOG.to_owned(),
            log_format: Self::LOG_FORMAT,
        }
    }
}

fn secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value))
}

/// Where the data lives, decided by `DATABASE_URL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Production,
}

impl Config {
    /// The defaults, with nothing read from the environment, keeping data in `data_dir`;
    /// for tests and tools.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::default();
        config.database.data_dir = data_dir.into();
        config
    }

    /// Whether `serve` runs workers itself.
    pub fn runs_workers_in_process(&self) -> bool {
        self.workers.in_process.unwrap_or(self.redis.url.is_none())
    }

    /// The collaboration hub's limits and timings.
    pub fn collab(&self) -> schema::documents::CollabConfig {
        let documents = &self.documents;
        schema::documents::CollabConfig {
            max_update_bytes: documents.max_update_bytes,
            max_file_bytes: documents.max_file_bytes,
            max_files: documents.max_files,
            compact_after_updates: documents.compact_after_updates.max(1),
            idle_unload: Duration::from_secs(documents.idle_secs),
            autosave_idle: Duration::from_secs(documents.autosave_idle_secs),
            presence_ttl: Duration::from_secs(self.presence.ttl_secs),
            subscriber_queue: documents.subscriber_queue as usize,
        }
    }

    /// How the GraphQL schema is served.
    pub fn schema_options(&self) -> schema::SchemaOptions {
        schema::SchemaOptions {
            introspection: self.server.introspection,
            // An `applyUpdate` carries its update in the variables, in base64.
            max_variables_bytes: self.documents.max_variables_bytes(),
            query_timeout: Duration::from_millis(self.connections.query_timeout_ms.max(1)),
            budgets: Some(self.rate_limits.budgets()),
        }
    }

    pub fn mode(&self) -> Mode {
        if self.database.url.is_some() {
            Mode::Production
        } else {
            Mode::Embedded
        }
    }

    /// The SeaORM URL of the database this configuration points at.
    pub fn database_url(&self) -> SecretString {
        match &self.database.url {
            Some(url) => url.clone(),
            None => {
                let path = self.database.data_dir.join("codecrafter.db");
                SecretString::from(format!("sqlite://{}?mode=rwc", path.display()))
            }
        }
    }

    /// Whether a database URL names PostgreSQL; anything else is refused at start-up.
    pub fn database_is_postgres(&self) -> bool {
        self.database.url.as_ref().is_some_and(|url| {
            let url = url.expose_secret();
            url.starts_with("postgres://") || url.starts_with("postgresql://")
        })
    }
}
/// How long connections may stay idle or slow, and how many there may be.
#[derive(Args, Debug, Clone)]
pub struct ConnectionLimits {
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = ConnectionLimits::HEADER_READ_TIMEOUT_SECS, global = true)]
    pub header_read_timeout_secs: u64,

    /// Milliseconds a query may execute (mutations are never cut off midway).
    #[arg(long, env = "QUERY_TIMEOUT_MS", default_value_t = ConnectionLimits::QUERY_TIMEOUT_MS, global = true)]
    pub query_timeout_ms: u64,

    /// Seconds an HTTP request (body read, execution, answer) may take.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = ConnectionLimits::REQUEST_TIMEOUT_SECS, global = true)]
    pub request_timeout_secs: u64,

    /// Most open connections (HTTP and WebSocket) the node accepts; also bounded by the
    /// process's descriptor limit.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = ConnectionLimits::MAX_CONNECTIONS, global = true)]
    pub max_connections: usize,

    /// Most open connections from one IP address.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = ConnectionLimits::MAX_CONNECTIONS_PER_IP, global = true)]
    pub max_connections_per_ip: usize,

    /// Seconds a WebSocket has to send `connection_init` (then closed with 4408).
    #[arg(long, env = "WS_INIT_TIMEOUT_SECS", default_value_t = ConnectionLimits::WS_INIT_TIMEOUT_SECS, global = true)]
    pub ws_init_timeout_secs: u64,

    /// Seconds between the server's graphql-ws pings; a socket that answers nothing for
    /// twice this long is closed.
    #[arg(long, env = "WS_PING_INTERVAL_SECS", default_value_t = ConnectionLimits::WS_PING_INTERVAL_SECS, global = true)]
    pub ws_ping_interval_secs: u64,

    /// Seconds a WebSocket may take nothing of what is written to it (the client stopped
    /// reading) before it is closed, so the client reconnects and resumes with `since`.
    #[arg(long, env = "WS_STALL_TIMEOUT_SECS", default_value_t = ConnectionLimits::WS_STALL_TIMEOUT_SECS, global = true)]
    pub ws_stall_timeout_secs: u64,
}

impl ConnectionLimits {
    pub const HEADER_READ_TIMEOUT_SECS: u64 = 10;
    pub const QUERY_TIMEOUT_MS: u64 = 10_000;
    pub const REQUEST_TIMEOUT_SECS: u64 = 30;
    pub const MAX_CONNECTIONS: usize = 10_000;
    pub const MAX_CONNECTIONS_PER_IP: usize = 256;
    pub const WS_INIT_TIMEOUT_SECS: u64 = 10;
    pub const WS_PING_INTERVAL_SECS: u64 = 15;
    pub const WS_STALL_TIMEOUT_SECS: u64 = 10;
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: Self::HEADER_READ_TIMEOUT_SECS,
            query_timeout_ms: Self::QUERY_TIMEOUT_MS,
            request_timeout_secs: Self::REQUEST_TIMEOUT_SECS,
            max_connections: Self::MAX_CONNECTIONS,
            max_connections_per_ip: Self::MAX_CONNECTIONS_PER_IP,
            ws_init_timeout_secs: Self::WS_INIT_TIMEOUT_SECS,
            ws_ping_interval_secs: Self::WS_PING_INTERVAL_SECS,
            ws_stall_timeout_secs: Self::WS_STALL_TIMEOUT_SECS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_is_the_default_and_flags_parse() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "codecrafter",
            "--bind",
            "0.0.0.0:9000",
            "--data-dir",
            "/tmp/x",
        ])?;
        assert_eq!(cli.command, None);
        assert_eq!(
            cli.config.server.bind,
            SocketAddr::from(([0, 0, 0, 0], 9000))
        );
        let cli = Cli::try_parse_from(["codecrafter", "print-schema"])?;
        assert_eq!(cli.command, Some(Command::PrintSchema));
        Ok(())
    }

    /// The groups are an inside matter: every flag and variable keeps its name.
    #[test]
    fn flags_and_variables_keep_their_names() {
        use clap::CommandFactory;
        let mut named: Vec<(String, String)> = Cli::command()
            .get_arguments()
            .filter_map(|arg| {
                Some((
                    arg.get_long()?.to_owned(),
                    arg.get_env()?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        named.sort();
        let mut expected: Vec<(String, String)> = [
            ("access-token-ttl-secs", "ACCESS_TOKEN_TTL_SECS"),
            ("autosave-idle-secs", "AUTOSAVE_IDLE_SECS"),
            ("bind", "BIND"),
            ("compact-after-updates", "COMPACT_AFTER_UPDATES"),
            ("cors-origins", "CORS_ORIGINS"),
            ("data-dir", "CODECRAFTER_DATA_DIR"),
            ("database-max-connections", "DATABASE_MAX_CONNECTIONS"),
            ("database-url", "DATABASE_URL"),
            ("document-head-check-ms", "DOCUMENT_HEAD_CHECK_MS"),
            ("document-idle-secs", "DOCUMENT_IDLE_SECS"),
            ("document-subscriber-queue", "DOCUMENT_SUBSCRIBER_QUEUE"),
            ("header-read-timeout-secs", "HEADER_READ_TIMEOUT_SECS"),
            ("in-process-workers", "IN_PROCESS_WORKERS"),
            ("introspection", "INTROSPECTION"),
            ("job-queue", "JOB_QUEUE"),
            ("jwt-secret", "JWT_SECRET"),
            ("log", "RUST_LOG"),
            ("log-format", "LOG_FORMAT"),
            ("max-body-bytes", "MAX_BODY_BYTES"),
            ("max-connections", "MAX_CONNECTIONS"),
            ("max-connections-per-ip", "MAX_CONNECTIONS_PER_IP"),
            ("max-file-bytes", "MAX_FILE_BYTES"),
            ("max-files", "MAX_FILES_PER_PROJECT"),
            ("max-update-bytes", "MAX_UPDATE_BYTES"),
            ("presence-ttl-secs", "PRESENCE_TTL_SECS"),
            ("query-timeout-ms", "QUERY_TIMEOUT_MS"),
            ("redis-channel", "REDIS_CHANNEL"),
            ("redis-url", "REDIS_URL"),
            ("refresh-reuse-grace-secs", "REFRESH_REUSE_GRACE_SECS"),
            ("refresh-token-ttl-days", "REFRESH_TOKEN_TTL_DAYS"),
            ("request-timeout-secs", "REQUEST_TIMEOUT_SECS"),
            ("run-max-memory-mb", "RUN_MAX_MEMORY_MB"),
            ("run-max-wall-secs", "RUN_MAX_WALL_SECS"),
            ("runs-per-minute", "RUNS_PER_MINUTE"),
            ("rate-limit-per-second", "RATE_LIMIT_PER_SECOND"),
            ("rate-limit-burst", "RATE_LIMIT_BURST"),
            ("rate-limit-auth-per-minute", "RATE_LIMIT_AUTH_PER_MINUTE"),
            ("rate-limit-auth-burst", "RATE_LIMIT_AUTH_BURST"),
            (
                "rate-limit-writes-per-minute",
                "RATE_LIMIT_WRITES_PER_MINUTE",
            ),
            ("rate-limit-writes-burst", "RATE_LIMIT_WRITES_BURST"),
            (
                "rate-limit-updates-per-second",
                "RATE_LIMIT_UPDATES_PER_SECOND",
            ),
            ("rate-limit-updates-burst", "RATE_LIMIT_UPDATES_BURST"),
            ("rate-limit-redis-timeout-ms", "RATE_LIMIT_REDIS_TIMEOUT_MS"),
            ("trusted-proxies", "TRUSTED_PROXIES"),
            ("sandbox-bwrap", "SANDBOX_BWRAP"),
            ("worker-concurrency", "WORKER_CONCURRENCY"),
            ("worker-grace-secs", "WORKER_GRACE_SECS"),
            ("worker-metrics-bind", "WORKER_METRICS_BIND"),
            ("ws-init-timeout-secs", "WS_INIT_TIMEOUT_SECS"),
            ("ws-ping-interval-secs", "WS_PING_INTERVAL_SECS"),
            ("ws-stall-timeout-secs", "WS_STALL_TIMEOUT_SECS"),
        ]
        .into_iter()
        .map(|(flag, env)| (flag.to_owned(), env.to_owned()))
        .collect();
        expected.sort();
        assert_eq!(named, expected);
    }

    /// What clap fills in when nothing is given is what `Default` (and so the tests) uses.
    #[test]
    fn parsed_defaults_are_the_default() -> Result<(), clap::Error> {
        use clap::CommandFactory;
        // A variable set in the test's environment would rightly win over the default.
        if Cli::command()
            .get_arguments()
            .filter_map(clap::Arg::get_env)
            .any(|name| std::env::var_os(name).is_some())
        {
            return Ok(());
        }
        let parsed = Cli::try_parse_from(["codecrafter"])?.config;
        let default = Config::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
        Ok(())
    }
}
