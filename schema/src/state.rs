//! What every resolver reaches through the schema's data.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::auth::revocations::RevokedSessions;
use crate::auth::tokens::TokenIssuer;
use crate::documents::{CollabConfig, Documents};
use crate::presence::Presence;
use crate::realtime::Bus;
use crate::runs::RunsConfig;
use crate::shared_limits::SharedLimits;

/// Code runs: where they are queued, and their rules.
pub struct Runs {
    pub queue: jobs::queue::Queue,
    pub config: RunsConfig,
}

/// Cheap to clone: the connection pool, the issuer, the bus and the hub are shared.
#[derive(Clone)]
pub struct Services {
    /// Where everything is written, and read back inside a change.
    pub db: DatabaseConnection,
    /// Where queries read (see [`Services::with_reads`]); `db` unless told otherwise.
    pub reads: DatabaseConnection,
    pub tokens: Arc<TokenIssuer>,
    /// Sessions ended before their access tokens expire (shared through Redis in production).
    pub revoked_sessions: Arc<RevokedSessions>,
    /// Failed sign-ins per (login, address), counted with [`Services::limits`].
    pub sign_ins: Arc<crate::auth::limiter::SignInLimiter>,
    /// Where the budgets and the sign-in slowdown are counted: on this node, or in Redis
    /// with the other nodes (see [`Services::with_shared_limits`]).
    pub limits: SharedLimits,
    /// Profiles recently read (a few seconds), shared by every request and connection.
    pub users: crate::loaders::UserCache,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub bus: Arc<Bus>,
    pub documents: Documents,
    /// Who is online in each project (a replica per project followed on this node).
    pub presence: Presence,
    pub runs: Arc<Runs>,
    /// Documents parsed lately, by their text (see [`crate::ParsedDocuments`]).
    pub parsed: Arc<crate::ParsedDocuments>,
}

impl Services {
    /// Everything, with the document hub's background tasks started (needs a Tokio runtime).
    pub fn new(
        db: DatabaseConnection,
        tokens: TokenIssuer,
        revoked_sessions: RevokedSessions,
        bus: Arc<Bus>,
        collab: CollabConfig,
        runs: Runs,
    ) -> Self {
        let presence = Presence::new(bus.clone(), collab.presence_ttl);
        let documents = Documents::start(db.clone(), bus.clone(), collab);
        Self {
            reads: db.clone(),
            db,
            tokens: Arc::new(tokens),
            revoked_sessions: Arc::new(revoked_sessions),
            sign_ins: Arc::default(),
            limits: SharedLimits::local(),
            users: crate::loaders::UserCache::default(),
            metrics: Arc::default(),
            bus,
            documents,
            presence,
            runs: Arc::new(runs),
            parsed: Arc::default(),
        }
    }

    /// Read through `reads` (embedded mode: read-only SQLite connections beside the writer)
    /// where a request only reads: queries and the fields of what they return. What a
    /// mutation reads before it writes stays on `db`. Everything `db` committed is visible
    /// to `reads` (SQLite in WAL mode: a statement reads what was committed when it began).
    pub fn with_reads(mut self, reads: DatabaseConnection) -> Self {
        self.reads = reads;
        self
    }

    /// Count the budgets and the sign-in slowdown in `limits` (Redis, shared by the nodes of
    /// the deployment) instead of on this node alone. Before the schema is built from these
    /// services (its budgets take `limits` from here).
    pub fn with_shared_limits(mut self, limits: SharedLimits) -> Self {
        self.sign_ins = Arc::new(crate::auth::limiter::SignInLimiter::new(limits.clone()));
        self.limits = limits;
        self
    }

    /// What the auth operations use of the services.
    pub fn auth(&self) -> crate::auth::service::Auth<'_> {
        crate::auth::service::Auth {
            db: &self.db,
            tokens: &self.tokens,
            sign_ins: &self.sign_ins,
            revoked_sessions: &self.revoked_sessions,
        }
    }

    /// Stop every background task (the document hub's, presence's, the revocation listener,
    /// the bus's Redis link) and wait for them, writing the documents' pending auto-saves on
    /// the way (a graceful stop, once no more requests arrive).
    pub async fn shutdown(&self) {
        self.presence.shutdown().await;
        self.documents.shutdown().await;
        self.revoked_sessions.shutdown().await;
        // Last: the auto-saves above may still have something to tell the other nodes.
        self.bus.shutdown().await;
    }
}
