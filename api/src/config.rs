//! The one typed configuration, read once at start-up from flags and environment.

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

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./codecrafter-data";
pub const DEFAULT_REDIS_CHANNEL: &str = "codecrafter";
pub const DEFAULT_LOG: &str = "info,sqlx=warn,sea_orm=warn";
/// Frontends in development (Vite's dev and preview servers, the usual port 3000); pages the
/// binary serves itself are same-origin and need no entry.
pub const DEFAULT_CORS_ORIGINS: &str = "http://localhost:5173,http://127.0.0.1:5173,\
http://localhost:4173,http://127.0.0.1:4173,http://localhost:3000,http://127.0.0.1:3000";

#[derive(Args, Debug, Clone)]
pub struct Config {
    /// PostgreSQL URL (production mode). Without it: embedded mode, SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = secret, global = true)]
    pub database_url: Option<SecretString>,

    /// Where embedded mode keeps its database and generated key.
    #[arg(long, env = "CODECRAFTER_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,

    /// Key for signing access tokens, at least 32 characters. Required with DATABASE_URL;
    /// in embedded mode one is generated and kept in the data dir when unset.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = secret, global = true)]
    pub jwt_secret: Option<SecretString>,

    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = DEFAULT_BIND, global = true)]
    pub bind: SocketAddr,

    /// Log filter, in `tracing` directive syntax.
    #[arg(long = "log", env = "RUST_LOG", default_value = DEFAULT_LOG, global = true)]
    pub log_filter: String,

    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "ACCESS_TOKEN_TTL_SECS", default_value_t = 15 * 60, global = true)]
    pub access_token_ttl_secs: u64,

    /// Lifetime of refresh tokens, in days.
    #[arg(
        long,
        env = "REFRESH_TOKEN_TTL_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub refresh_token_ttl_days: u64,

    /// Seconds after a refresh token was used during which presenting it again (another tab
    /// refreshing at the same moment) gets the same new pair instead of ending the session.
    /// 0 treats every second use as reuse.
    #[arg(
        long,
        env = "REFRESH_REUSE_GRACE_SECS",
        default_value_t = 10,
        global = true
    )]
    pub refresh_reuse_grace_secs: u64,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Answer introspection (`__schema`, `__type`), as GraphiQL and codegen tools need.
    #[arg(
        long,
        env = "INTROSPECTION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub introspection: bool,

    #[command(flatten)]
    pub connections: ConnectionLimits,

    /// Connection pool size for PostgreSQL (SQLite always uses one writer connection).
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub database_max_connections: u32,

    /// Redis URL (production): fan-out between API nodes and the job queue. Without it, one
    /// node with in-process broadcast. A node starts and serves without Redis reachable, and
    /// connects when it is.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = secret, global = true)]
    pub redis_url: Option<SecretString>,

    /// The Redis pub/sub channel the nodes of one deployment share.
    #[arg(long, env = "REDIS_CHANNEL", default_value = DEFAULT_REDIS_CHANNEL, global = true)]
    pub redis_channel: String,

    /// With REDIS_URL: how often, in milliseconds, a node compares the documents it holds
    /// with the database, to catch up on updates Redis never delivered (a writer's node that
    /// died before publishing, an outage). Such an update is late by at most twice this.
    /// 0 turns the check off.
    #[arg(
        long,
        env = "DOCUMENT_HEAD_CHECK_MS",
        default_value_t = 1000,
        global = true
    )]
    pub document_head_check_ms: u64,

    /// Largest Loro update `applyUpdate` accepts, in bytes.
    #[arg(long, env = "MAX_UPDATE_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_update_bytes: usize,

    /// Largest file, in bytes.
    #[arg(long, env = "MAX_FILE_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_file_bytes: usize,

    /// Most files in one project.
    #[arg(
        long,
        env = "MAX_FILES_PER_PROJECT",
        default_value_t = 1000,
        global = true
    )]
    pub max_files: usize,

    /// Fold a document's update log into a snapshot after this many updates.
    #[arg(
        long,
        env = "COMPACT_AFTER_UPDATES",
        default_value_t = 500,
        global = true
    )]
    pub compact_after_updates: u32,

    /// Seconds a document stays idle before it is compacted and dropped from memory.
    #[arg(long, env = "DOCUMENT_IDLE_SECS", default_value_t = 120, global = true)]
    pub document_idle_secs: u64,

    /// Seconds a changed document stays idle before an automatic checkpoint ("Auto-save").
    #[arg(long, env = "AUTOSAVE_IDLE_SECS", default_value_t = 600, global = true)]
    pub autosave_idle_secs: u64,

    /// Seconds without an update or heartbeat before a client leaves presence.
    #[arg(long, env = "PRESENCE_TTL_SECS", default_value_t = 30, global = true)]
    pub presence_ttl_secs: u64,

    /// Code runs one user may start per minute.
    #[arg(long, env = "RUNS_PER_MINUTE", default_value_t = 10, global = true)]
    pub runs_per_minute: u32,

    /// Most wall-clock seconds a run may ask for (the default is 10).
    #[arg(long, env = "RUN_MAX_WALL_SECS", default_value_t = 60, global = true)]
    pub run_max_wall_secs: u64,

    /// Most memory a run may ask for, in MiB (the default is 256).
    #[arg(long, env = "RUN_MAX_MEMORY_MB", default_value_t = 1024, global = true)]
    pub run_max_memory_mb: u64,

    /// Runs a worker process executes at once (default: the number of cores).
    #[arg(long, env = "WORKER_CONCURRENCY", global = true)]
    pub worker_concurrency: Option<usize>,

    /// Run workers inside `serve` (the default in embedded mode, i.e. without REDIS_URL).
    #[arg(long, env = "IN_PROCESS_WORKERS", global = true)]
    pub in_process_workers: Option<bool>,

    /// Seconds a stopping worker lets its runs finish before handing them back.
    #[arg(long, env = "WORKER_GRACE_SECS", default_value_t = 30, global = true)]
    pub worker_grace_secs: u64,

    /// The Redis list the job queue uses (production).
    #[arg(
        long,
        env = "JOB_QUEUE",
        default_value = "codecrafter-runs",
        global = true
    )]
    pub job_queue: String,

    /// The bubblewrap executable of the sandbox.
    #[arg(long, env = "SANDBOX_BWRAP", default_value = "bwrap", global = true)]
    pub sandbox_bwrap: PathBuf,

    /// Origins (`scheme://host[:port]`, comma-separated) whose pages may call the API from a
    /// browser, sending `Authorization` and `Content-Type`; `*` allows any origin.
    #[arg(
        long,
        env = "CORS_ORIGINS",
        value_delimiter = ',',
        default_value = DEFAULT_CORS_ORIGINS,
        global = true
    )]
    pub cors_origins: Vec<String>,
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
    /// The defaults, with nothing read from the environment; for tests and tools.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            database_url: None,
            data_dir: data_dir.into(),
            jwt_secret: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log_filter: DEFAULT_LOG.to_owned(),
            log_format: LogFormat::Text,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_days: 30,
            refresh_reuse_grace_secs: 10,
            max_body_bytes: 1024 * 1024,
            introspection: true,
            connections: ConnectionLimits::default(),
            database_max_connections: 10,
            redis_url: None,
            redis_channel: DEFAULT_REDIS_CHANNEL.to_owned(),
            document_head_check_ms: 1000,
            max_update_bytes: 1024 * 1024,
            max_file_bytes: 1024 * 1024,
            max_files: 1000,
            compact_after_updates: 500,
            document_idle_secs: 120,
            autosave_idle_secs: 600,
            presence_ttl_secs: 30,
            runs_per_minute: 10,
            run_max_wall_secs: 60,
            run_max_memory_mb: 1024,
            worker_concurrency: None,
            in_process_workers: None,
            worker_grace_secs: 30,
            job_queue: "codecrafter-runs".to_owned(),
            sandbox_bwrap: PathBuf::from("bwrap"),
            cors_origins: DEFAULT_CORS_ORIGINS.split(',').map(str::to_owned).collect(),
        }
    }

    /// The rules of code runs.
    pub fn runs(&self) -> schema::runs::RunsConfig {
        let mut max = schema::runs::RunLimits::MAX;
        max.wall_ms = self.run_max_wall_secs.max(1) * 1000;
        max.memory_bytes = self.run_max_memory_mb.max(16) * 1024 * 1024;
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

    /// Whether `serve` runs workers itself.
    pub fn runs_workers_in_process(&self) -> bool {
        self.in_process_workers.unwrap_or(self.redis_url.is_none())
    }

    pub fn worker_concurrency(&self) -> usize {
        self.worker_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
            .max(1)
    }

    /// The collaboration hub's limits and timings.
    pub fn collab(&self) -> schema::documents::CollabConfig {
        schema::documents::CollabConfig {
            max_update_bytes: self.max_update_bytes,
            max_file_bytes: self.max_file_bytes,
            max_files: self.max_files,
            compact_after_updates: self.compact_after_updates.max(1),
            idle_unload: Duration::from_secs(self.document_idle_secs),
            autosave_idle: Duration::from_secs(self.autosave_idle_secs),
            presence_ttl: Duration::from_secs(self.presence_ttl_secs),
        }
    }

    /// How the GraphQL schema is served.
    pub fn schema_options(&self) -> schema::SchemaOptions {
        schema::SchemaOptions {
            introspection: self.introspection,
            // An `applyUpdate` carries its update in the variables, in base64.
            max_variables_bytes: self.max_update_bytes / 3 * 4 + 64 * 1024,
            query_timeout: Duration::from_millis(self.connections.query_timeout_ms.max(1)),
        }
    }

    /// How often documents are checked against the database (multi-node only).
    pub fn document_head_check(&self) -> Option<Duration> {
        (self.document_head_check_ms > 0)
            .then(|| Duration::from_millis(self.document_head_check_ms))
    }

    pub fn mode(&self) -> Mode {
        if self.database_url.is_some() {
            Mode::Production
        } else {
            Mode::Embedded
        }
    }

    /// The SeaORM URL of the database this configuration points at.
    pub fn database_url(&self) -> SecretString {
        match &self.database_url {
            Some(url) => url.clone(),
            None => {
                let path = self.data_dir.join("codecrafter.db");
                SecretString::from(format!("sqlite://{}?mode=rwc", path.display()))
            }
        }
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    pub fn refresh_token_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_days * 24 * 60 * 60)
    }

    pub fn refresh_reuse_grace(&self) -> Duration {
        Duration::from_secs(self.refresh_reuse_grace_secs)
    }

    /// Whether a database URL names PostgreSQL; anything else is refused at start-up.
    pub fn database_is_postgres(&self) -> bool {
        self.database_url.as_ref().is_some_and(|url| {
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

    /// Seconds a WebSocket's outgoing queue may stay full (the client stopped reading)
    /// before the socket is closed, so the client reconnects and resumes with `since`.
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
        assert_eq!(cli.config.bind, SocketAddr::from(([0, 0, 0, 0], 9000)));
        let cli = Cli::try_parse_from(["codecrafter", "print-schema"])?;
        assert_eq!(cli.command, Some(Command::PrintSchema));
        Ok(())
    }
}
