//! What every resolver reaches through the schema's data.

use std::sync::Arc;

use sea_orm::{DatabaseBackend, DatabaseConnection};

use crate::auth::tokens::TokenIssuer;

/// Cheap to clone: the connection pool and the issuer are shared.
#[derive(Clone)]
pub struct Services {
    pub db: DatabaseConnection,
    pub tokens: Arc<TokenIssuer>,
}

impl Services {
    pub fn new(db: DatabaseConnection, tokens: TokenIssuer) -> Self {
        Self {
            db,
            tokens: Arc::new(tokens),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == DatabaseBackend::Postgres
    }
}
