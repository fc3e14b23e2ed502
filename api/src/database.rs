//! Connecting to the database of either mode and bringing its schema up to date.

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::ExposeSecret;

use crate::config::{Config, Mode};

/// Where the node writes and where it reads. With PostgreSQL both are one pool. With SQLite
/// there is one writer connection (SQLite allows one writer at a time anyway, and a single
/// one rules out "database is locked" between concurrent transactions) and a pool of
/// read-only connections beside it, which WAL lets read while the writer writes: a read
/// does not queue behind every other request's statements on one connection.
pub struct Databases {
    pub writes: DatabaseConnection,
    pub reads: DatabaseConnection,
}

/// How long a request waits for a free connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an SQLite statement waits for a lock another connection holds (a reader while a
/// checkpoint runs, a `codecrafter worker` process writing the same file) before it fails.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer, migrated, and the readers.
pub async fn connect(config: &Config) -> anyhow::Result<Databases> {
    let writes = connect_writer(config).await?;
    let reads = match config.mode() {
        Mode::Production => writes.clone(),
        Mode::Embedded => {
            let mut options = sqlite_options(config, true);
            options
                .max_connections(config.database.max_connections.max(1))
                .min_connections(1);
            Database::connect(options)
                .await
                .context("could not open the embedded SQLite database for reading")?
        }
    };
    Ok(Databases { writes, reads })
}

/// The connection (PostgreSQL: the pool) that writes, with the schema brought up to date.
pub async fn connect_writer(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let writes = open_writer(config).await?;
    Migrator::up(&writes, None)
        .await
        .context("database migration failed")?;
    Ok(writes)
}

async fn open_writer(config: &Config) -> anyhow::Result<DatabaseConnection> {
    match config.mode() {
        Mode::Production => {
            if !config.database_is_postgres() {
                anyhow::bail!(
                    "DATABASE_URL must be a postgres:// URL (leave it unset for embedded SQLite)"
                );
            }
            let mut options = ConnectOptions::new(config.database_url().expose_secret().to_owned());
            options
                .sqlx_logging(false)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .max_connections(config.database.max_connections)
                .min_connections(1);
            Database::connect(options)
                .await
                .context("could not connect to PostgreSQL at DATABASE_URL")
        }
        Mode::Embedded => {
            std::fs::create_dir_all(&config.database.data_dir).with_context(|| {
                format!(
                    "could not create the data directory {}",
                    config.database.data_dir.display()
                )
            })?;
            let mut options = sqlite_options(config, false);
            options.max_connections(1).min_connections(1);
            Database::connect(options)
                .await
                .context("could not open the embedded SQLite database")
        }
    }
}

/// The embedded database's options, set on every connection the pool opens (a connection
/// replaced after its lifetime gets them too).
fn sqlite_options(config: &Config, read_only: bool) -> ConnectOptions {
    let mut options = ConnectOptions::new(config.database_url().expose_secret().to_owned());
    options
        .sqlx_logging(false)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A connection to a local file cannot have gone away: no round trip to its thread
        // to check before each statement.
        .test_before_acquire(false)
        .map_sqlx_sqlite_opts(move |options: SqliteConnectOptions| {
            options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .read_only(read_only)
        });
    options
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use sea_orm::{ConnectionTrait, Statement};

    use super::*;
    use crate::Cli;

    async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<String> {
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await?
            .context("no row")?;
        Ok(row
            .try_get_by_index::<String>(0)
            .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))?)
    }

    #[tokio::test]
    async fn embedded_mode_reads_beside_one_writer_and_sees_what_it_committed() -> anyhow::Result<()>
    {
        let data = tempfile::tempdir()?;
        let data_dir = data.path().to_str().context("path")?;
        let mut config = Cli::try_parse_from(["codecrafter", "--data-dir", data_dir])?.config;
        config.database.url = None;
        config.database.max_connections = 3;
        let databases = connect(&config).await?;

        // The bundled SQLite keeps a statement's plan when its bound LIMIT changes
        // (`.cargo/config.toml`), so `.one()` is not compiled again on each execution.
        let qpsg = "SELECT sqlite_compileoption_used('ENABLE_QPSG')";
        assert_eq!(scalar(&databases.reads, qpsg).await?, "1");
        // Every connection of either pool is set up alike.
        for db in [&databases.writes, &databases.reads] {
            assert_eq!(scalar(db, "PRAGMA journal_mode").await?, "wal");
            assert_eq!(scalar(db, "PRAGMA foreign_keys").await?, "1");
            assert_eq!(scalar(db, "PRAGMA synchronous").await?, "1", "NORMAL");
        }
        // The readers cannot write, not even by mistake.
        let refused = databases
            .reads
            .execute_unprepared("CREATE TABLE scratch (n INTEGER)")
            .await
            .expect_err("a reader wrote");
        assert!(refused.to_string().contains("readonly"), "{refused}");

        // What the writer committed, every reader reads at once.
        databases
            .writes
            .execute_unprepared("CREATE TABLE scratch (n INTEGER); INSERT INTO scratch VALUES (7)")
            .await?;
        let reads = (0..6).map(|_| scalar(&databases.reads, "SELECT sum(n) FROM scratch"));
        for read in futures_util::future::join_all(reads).await {
            assert_eq!(read?, "7");
        }
        Ok(())
    }
}
