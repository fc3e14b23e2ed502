//! The end-to-end test harness: starts the real server (through `Application::build`, as
//! `main` does) on port 0 against a fresh database, and talks GraphQL over HTTP to it.
//!
//! Every test runs twice, on a fresh SQLite data directory and on a fresh PostgreSQL database
//! created on the local server and dropped afterwards (see [`backend_tests!`]).
//! `TEST_DATABASE_URL` names the PostgreSQL maintenance database to create them from
//! (default `postgres://postgres@127.0.0.1:5432/postgres`). `TEST_LOG=1` shows server logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use api::{Application, Config};
use futures_util::FutureExt;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use serde_json;
pub use testkit::{eventually, eventually_some};

/// Held by a test that reads a node's own gauges from `/metrics` (connections, subscriptions,
/// documents in memory): the servers of one test process share one metrics recorder, and a
/// scrape sets those gauges to its own node's counts just before rendering, so two scrapes at
/// once could show each other's.
pub static NODE_GAUGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server and a client for it. Cheap to clone.
#[derive(Clone)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub backend: Backend,
    pub client: reqwest::Client,
    /// The server's own connection pool, for arranging state a test cannot reach over GraphQL.
    pub db: DatabaseConnection,
    /// The server's services, to observe what a client cannot see (documents in memory).
    pub services: schema::Services,
    pub config: Config,
    running: Arc<Mutex<Option<Running>>>,
}

struct Running {
    stop: oneshot::Sender<()>,
    server: JoinHandle<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
    pg_database: Option<String>,
    /// More API nodes on the same database (see [`TestApp::spawn_node`]).
    nodes: Vec<(oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
}

pub mod ws;

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn database_url_for(name: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// A configuration for `backend` on a fresh store; the data directory lives in `dir`.
pub async fn fresh_config(backend: Backend, dir: &std::path::Path) -> (Config, Option<String>) {
    let mut config = Config::embedded(dir);
    config.server.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.database.max_connections = 4;
    // Tests sign up and write far faster than people; the budgets' own tests set them low.
    config.rate_limits.per_second = 10_000;
    config.rate_limits.burst = 100_000;
    config.rate_limits.auth_burst = 100_000;
    config.rate_limits.writes_burst = 100_000;
    config.rate_limits.updates_burst = 100_000;
    if std::env::var_os("TEST_LOG").is_some() {
        api::telemetry::init(&config);
    }
    match backend {
        Backend::Sqlite => (config, None),
        Backend::Postgres => {
            let name = format!("cc_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(admin_url())
                .await
                .expect("connect to the PostgreSQL test server");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create test database");
            admin.close().await.ok();
            config.database.url = Some(SecretString::from(database_url_for(&name)));
            config.auth.jwt_secret = Some(SecretString::from(
                "test-secret-test-secret-test-secret-0123",
            ));
            (config, Some(name))
        }
    }
}

pub async fn drop_database(name: &str) {
    if let Ok(admin) = Database::connect(admin_url()).await {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
        admin.close().await.ok();
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, change: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut config, pg_database) = fresh_config(backend, dir.path()).await;
        change(&mut config);
        Self::start(
            backend,
            config,
            dir,
            pg_database,
            Arc::new(Mutex::new(None)),
        )
        .await
    }

    async fn start(
        backend: Backend,
        config: Config,
        dir: tempfile::TempDir,
        pg_database: Option<String>,
        running: Arc<Mutex<Option<Running>>>,
    ) -> TestApp {
        let (app, stop, server) = Self::serve(&config).await;
        *running.lock().unwrap() = Some(Running {
            stop,
            server,
            _data_dir: dir,
            pg_database,
            nodes: Vec::new(),
        });
        TestApp {
            addr: app.0,
            backend,
            client: reqwest::Client::new(),
            db: app.1,
            services: app.2,
            config,
            running,
        }
    }

    #[allow(clippy::type_complexity)]
    async fn serve(
        config: &Config,
    ) -> (
        (SocketAddr, DatabaseConnection, schema::Services),
        oneshot::Sender<()>,
        JoinHandle<anyhow::Result<()>>,
    ) {
        let app = Application::build(config).await.expect("server builds");
        let addr = app.local_addr().expect("bound address");
        let db = app.services().db.clone();
        let services = app.services().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        ((addr, db, services), stop, server)
    }

    /// Stop the server and start a new one on the same database (a restart).
    pub async fn restart(&self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Restart with a changed configuration.
    pub async fn restart_with(&self, change: impl FnOnce(&mut Config)) -> TestApp {
        let running = self
            .running
            .lock()
            .unwrap()
            .take()
            .expect("server is running");
        for (stop, server) in running.nodes {
            let _ = stop.send(());
            let _ = server.await;
        }
        let _ = running.stop.send(());
        running
            .server
            .await
            .expect("server task")
            .expect("server stopped cleanly");
        let mut config = self.config.clone();
        change(&mut config);
        Self::start(
            self.backend,
            config,
            running._data_dir,
            running.pg_database,
            self.running.clone(),
        )
        .await
    }

    /// Start another API node on the same database and configuration (give the
    /// configuration a `redis_url` first for the nodes to share updates). It stops with
    /// this app.
    pub async fn spawn_node(&self) -> TestApp {
        let ((addr, db, services), stop, server) = Self::serve(&self.config).await;
        self.running
            .lock()
            .unwrap()
            .as_mut()
            .expect("server is running")
            .nodes
            .push((stop, server));
        TestApp {
            addr,
            db,
            services,
            ..self.clone()
        }
    }

    /// The same deployment reached at `addr`: another API node on the same database, running
    /// in a process of its own (its services are not reachable from here).
    pub fn at(&self, addr: SocketAddr) -> TestApp {
        TestApp {
            addr,
            ..self.clone()
        }
    }

    /// Stop the server and delete its database.
    pub async fn shutdown(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            for (stop, server) in running.nodes {
                let _ = stop.send(());
                let _ = server.await;
            }
            let _ = running.stop.send(());
            let _ = running.server.await;
            if let Some(name) = running.pg_database {
                drop_database(&name).await;
            }
        }
    }

    /// The real `codecrafter` binary at `exe` (its `main.rs`, built for the tests as
    /// `codecrafter-under-test`: `env!("CARGO_BIN_EXE_codecrafter-under-test")`, which only
    /// the test targets see) running `subcommand`, configured like this app's deployment
    /// through the environment (its PostgreSQL database, Redis, channel and job queue) and
    /// given nothing else: no inherited variables but `PATH`, no secret but the database's.
    pub fn binary(
        &self,
        exe: &str,
        subcommand: &str,
        data_dir: &std::path::Path,
    ) -> tokio::process::Command {
        use secrecy::ExposeSecret;
        let config = &self.config;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg(subcommand)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CODECRAFTER_DATA_DIR", data_dir)
            .env("REDIS_CHANNEL", &config.redis.channel)
            .env("JOB_QUEUE", &config.workers.job_queue)
            .kill_on_drop(true);
        if let Some(url) = &config.database.url {
            command.env("DATABASE_URL", url.expose_secret());
        }
        if let Some(url) = &config.redis.url {
            command.env("REDIS_URL", url.expose_secret());
        }
        command
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POST a GraphQL request, anonymously.
    pub async fn gql(&self, query: &str, variables: Value) -> Gql {
        self.send(None, query, variables).await
    }

    /// POST a GraphQL request with `Authorization: Bearer <token>`.
    pub async fn gql_as(&self, token: &str, query: &str, variables: Value) -> Gql {
        self.send(Some(token), query, variables).await
    }

    async fn send(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request reaches the server");
        Gql::read(response).await
    }

    /// Sign up `username` (email `<username>@example.com`, password `password-<username>`).
    pub async fn sign_up(&self, username: &str) -> TestUser {
        let response = self
            .gql(
                "mutation($input: SignUpInput!) { signUp(input: $input) { accessToken refreshToken user { id username } } }",
                json!({ "input": { "username": username, "email": format!("{username}@example.com"), "password": format!("password-{username}") } }),
            )
            .await;
        let payload = &response.data()["signUp"];
        TestUser {
            id: payload["user"]["id"].as_str().unwrap().to_owned(),
            username: username.to_owned(),
            access: payload["accessToken"].as_str().unwrap().to_owned(),
            refresh: payload["refreshToken"].as_str().unwrap().to_owned(),
        }
    }

    /// `owner` creates a project; returns its id.
    pub async fn create_project(&self, owner: &TestUser, title: &str, public: bool) -> String {
        let created = self
            .gql_as(
                &owner.access,
                "mutation($title: String!, $public: Boolean!) { createProject(input: {title: $title, isPublic: $public}) { id } }",
                json!({ "title": title, "public": public }),
            )
            .await;
        created.data()["createProject"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `user` creates an empty file at `path` in `project` (through `createFile`).
    pub async fn create_file(&self, user: &TestUser, project: &str, path: &str) {
        self.gql_as(
            &user.access,
            "mutation($p: ID!, $path: String!) { createFile(projectId: $p, path: $path) { path } }",
            json!({ "p": project, "path": path }),
        )
        .await
        .data();
    }

    /// The body of `GET path` on this server.
    pub async fn get_text(&self, path: &str) -> String {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// `owner` adds `user` to `project` with `role` (OWNER, EDITOR or VIEWER).
    pub async fn add_member(&self, owner: &TestUser, project: &str, user: &TestUser, role: &str) {
        self.gql_as(
            &owner.access,
            "mutation($p: ID!, $u: String!, $r: ProjectRole!) { addMember(projectId: $p, username: $u, role: $r) { role } }",
            json!({ "p": project, "u": user.username, "r": role }),
        )
        .await
        .data();
    }

    /// Make a user an admin, as an operator would in the database.
    pub async fn make_admin(&self, user: &TestUser) -> TestUser {
        self.db
            .execute_unprepared(&format!(
                "UPDATE users SET role = 'ADMIN' WHERE username = '{}'",
                user.username
            ))
            .await
            .unwrap();
        self.sign_in(&user.username, &format!("password-{}", user.username))
            .await
    }

    /// Sign in and return fresh tokens.
    pub async fn sign_in(&self, login: &str, password: &str) -> TestUser {
        let response = self
            .gql(
                "mutation($login: String!, $password: String!) { signIn(input: {login: $login, password: $password}) { accessToken refreshToken user { id username } } }",
                json!({ "login": login, "password": password }),
            )
            .await;
        let payload = &response.data()["signIn"];
        TestUser {
            id: payload["user"]["id"].as_str().unwrap().to_owned(),
            username: payload["user"]["username"].as_str().unwrap().to_owned(),
            access: payload["accessToken"].as_str().unwrap().to_owned(),
            refresh: payload["refreshToken"].as_str().unwrap().to_owned(),
        }
    }

    /// Count the rows of a table, to prove a rejected request wrote nothing.
    pub async fn count(&self, table: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }
}

/// A signed-up user and their tokens.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub access: String,
    pub refresh: String,
}

/// A GraphQL answer.
#[derive(Debug)]
pub struct Gql {
    pub status: u16,
    pub body: Value,
}

impl Gql {
    pub async fn read(response: reqwest::Response) -> Gql {
        let status = response.status().as_u16();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("not JSON (HTTP {status}): {text}"));
        Gql { status, body }
    }

    /// `data`, asserting there were no errors.
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            self.body
        );
        &self.body["data"]
    }

    /// The first error's `extensions.code`, asserting there was one.
    pub fn code(&self) -> &str {
        self.error()["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error without a code: {}", self.body))
    }

    pub fn error(&self) -> &Value {
        let errors = self.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("expected an error, got {}", self.body));
        &errors[0]
    }

    pub fn message(&self) -> &str {
        self.error()["message"].as_str().unwrap()
    }

    /// Assert the first error has `code` (and, when given, names `field`).
    pub fn assert_error(&self, code: &str, field: Option<&str>) {
        assert_eq!(self.code(), code, "{}", self.body);
        if let Some(field) = field {
            assert_eq!(self.error()["extensions"]["field"], field, "{}", self.body);
        }
    }
}

/// Run `test` against a fresh server on `backend`, then stop it and drop its database,
/// whether the test passed or panicked.
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    run_with(backend, |_| {}, test).await;
}

/// [`run`], with the configuration changed before the server starts.
pub async fn run_with<F, Fut>(backend: Backend, change: impl FnOnce(&mut Config), test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    let app = TestApp::spawn_with(backend, change).await;
    let outcome = AssertUnwindSafe(test(app.clone())).catch_unwind().await;
    app.shutdown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Point `config` at the local Redis with a channel of its own, so nodes started from it
/// share fan-out and session revocations with each other and with no other test.
pub fn use_redis(config: &mut Config) {
    config.redis.url = Some(SecretString::from("redis://127.0.0.1:6379"));
    config.redis.channel = format!("cc-test-{}", uuid::Uuid::new_v4());
}

/// A Redis server of the test's own, to stop and start again without disturbing the other
/// tests on the shared one. Stopped when dropped.
pub struct PrivateRedis {
    pub port: u16,
    server: Option<tokio::process::Child>,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = PrivateRedis { port, server: None };
        redis.up().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn up(&mut self) {
        let server = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        self.server = Some(server);
        eventually(std::time::Duration::from_secs(10), async || {
            self.answers().await
        })
        .await;
    }

    pub async fn answers(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut socket) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut answer = [0; 7];
        socket.write_all(b"PING\r\n").await.is_ok()
            && socket.read_exact(&mut answer).await.is_ok()
            && &answer == b"+PONG\r\n"
    }

    pub async fn down(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.start_kill().unwrap();
            server.wait().await.unwrap();
        }
    }
}

/// Declare tests that each run once on SQLite and once on PostgreSQL:
///
/// ```ignore
/// backend_tests! {
///     async fn signs_up(app) { ... }
/// }
/// ```
/// becomes `signs_up::sqlite` and `signs_up::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test]
                async fn sqlite() {
                    $crate::run($crate::Backend::Sqlite, |$app: $crate::TestApp| async move $body).await;
                }

                #[tokio::test]
                async fn postgres() {
                    $crate::run($crate::Backend::Postgres, |$app: $crate::TestApp| async move $body).await;
                }
            }
        )*
    };
}

/// A server in a process of its own: this test binary run again with `--exact --ignored`
/// for `entry`, an ignored test that serves and prints `listening on <addr>` (for example
/// `fanout::server_process`). `configure` adds its environment to what every such process
/// gets (a port of its own, the data directory, no database or Redis unless configured).
pub async fn spawn_server_process(
    entry: &str,
    data_dir: &std::path::Path,
    configure: impl FnOnce(&mut tokio::process::Command),
) -> (tokio::process::Child, SocketAddr) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            entry,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CODECRAFTER_TEST_SERVER", "1")
        .env("BIND", "127.0.0.1:0")
        .env("CODECRAFTER_DATA_DIR", data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    configure(&mut command);
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            // (After libtest's "test <entry> ... ", on the same line.)
            if let Some((_, addr)) = line.split_once("listening on ") {
                return addr.trim().parse().unwrap();
            }
        }
        panic!("the server process {entry} ended before listening");
    })
    .await
    .expect("the server process listens within 30 s");
    // What it prints later goes nowhere; nobody reads it.
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    (child, addr)
}
