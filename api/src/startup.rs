//! Building and running the application: the same path for `main` and the tests.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use schema::Services;
use schema::auth::tokens::TokenIssuer;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::config::{Config, Mode};
use crate::routes::{self, AppState};
use crate::{database, secrets};

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    services: Services,
    mode: Mode,
}

impl Application {
    /// Connect, migrate, and bind (port 0 picks a free port).
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let secret = secrets::jwt_secret(config)?;
        let db = database::connect(config).await?;
        database::migrate(&db).await?;
        let tokens = TokenIssuer::new(
            &secret,
            config.access_token_ttl(),
            config.refresh_token_ttl(),
        );
        let bus = match &config.redis_url {
            Some(url) => schema::realtime::Bus::redis(url.expose_secret(), &config.redis_channel)
                .await
                .context("REDIS_URL is set but Redis cannot be reached")?,
            None => schema::realtime::Bus::local(),
        };
        let services = Services::new(db, tokens, bus, config.collab());
        let schema = schema::build(services.clone());
        let router = routes::router(
            AppState {
                schema,
                services: services.clone(),
                max_ws_message_bytes: config
                    .max_body_bytes
                    .max(config.max_update_bytes / 3 * 4 + 64 * 1024),
            },
            config.max_body_bytes,
        );
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("could not listen on {}", config.bind))?;
        Ok(Self {
            listener,
            router,
            services,
            mode: config.mode(),
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

    /// Serve until `shutdown` resolves, then finish in-flight requests and close the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        self.services.db.close().await?;
        Ok(())
    }
}
