//! Connecting to the database of either mode and bringing its schema up to date.

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use secrecy::ExposeSecret;

use crate::config::{Config, Mode};

pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(config.database_url().expose_secret().to_owned());
    options
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10));
    match config.mode() {
        Mode::Production => {
            if !config.database_is_postgres() {
                anyhow::bail!(
                    "DATABASE_URL must be a postgres:// URL (leave it unset for embedded SQLite)"
                );
            }
            options
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
            // One connection: SQLite allows one writer at a time anyway, and a single
            // connection rules out "database is locked" between concurrent transactions.
            options.max_connections(1).min_connections(1);
            let db = Database::connect(options)
                .await
                .context("could not open the embedded SQLite database")?;
            db.execute_unprepared(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )
            .await
            .context("could not configure SQLite")?;
            Ok(db)
        }
    }
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("database migration failed")
}
