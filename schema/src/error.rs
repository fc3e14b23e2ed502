//! The one error type of the service layer, and its mapping to GraphQL `extensions.code`.
//!
//! `ApiError` deliberately does not implement `Display`: async-graphql converts any
//! `Display` type into an error without extensions, and this way `?` in a resolver always goes
//! through [`From<ApiError> for async_graphql::Error`], the single place codes are assigned.

use std::borrow::Cow;

use async_graphql::ErrorExtensions;

/// Every failure a client can see.
#[derive(Debug)]
pub enum ApiError {
    /// No valid access token, or wrong credentials.
    Unauthenticated(Cow<'static, str>),
    /// Signed in, but the role does not allow the operation.
    Forbidden(Cow<'static, str>),
    /// The thing does not exist, or the viewer may not know that it does.
    NotFound(&'static str),
    /// An argument is malformed; `field` names it as the client spelled it.
    BadUserInput {
        field: Cow<'static, str>,
        message: Cow<'static, str>,
    },
    /// The request clashes with the current state (a taken name, the last owner leaving…).
    Conflict {
        field: Option<&'static str>,
        message: Cow<'static, str>,
    },
    /// A write built on a version of the document the server does not have; the client
    /// catches up from `version_vector` (the server's) and retries. Code CONFLICT.
    OutOfDate {
        message: Cow<'static, str>,
        version_vector: String,
    },
    /// Too many requests; try again later.
    RateLimited { retry_after_secs: u64 },
    /// Anything else. The cause is logged, never shown.
    Internal(anyhow::Error),
}

impl ApiError {
    /// The same failure, for each other request of a group that failed together (a group
    /// commit). An internal error's cause stays with the first: it is logged once, and a
    /// client sees only INTERNAL_ERROR anyway.
    pub fn again(&self) -> Self {
        match self {
            Self::Unauthenticated(message) => Self::Unauthenticated(message.clone()),
            Self::Forbidden(message) => Self::Forbidden(message.clone()),
            Self::NotFound(what) => Self::NotFound(what),
            Self::BadUserInput { field, message } => Self::BadUserInput {
                field: field.clone(),
                message: message.clone(),
            },
            Self::Conflict { field, message } => Self::Conflict {
                field: *field,
                message: message.clone(),
            },
            Self::OutOfDate {
                message,
                version_vector,
            } => Self::OutOfDate {
                message: message.clone(),
                version_vector: version_vector.clone(),
            },
            Self::RateLimited { retry_after_secs } => Self::RateLimited {
                retry_after_secs: *retry_after_secs,
            },
            Self::Internal(_) => {
                Self::Internal(anyhow::anyhow!("failed together with another request"))
            }
        }
    }

    pub fn bad_input(
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::BadUserInput {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(field: Option<&'static str>, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Conflict {
            field,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Forbidden(message.into())
    }

    pub fn unauthenticated(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Unauthenticated(message.into())
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }

    /// The `extensions.code` clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => codes::UNAUTHENTICATED,
            Self::Forbidden(_) => codes::FORBIDDEN,
            Self::NotFound(_) => codes::NOT_FOUND,
            Self::BadUserInput { .. } => codes::BAD_USER_INPUT,
            Self::Conflict { .. } | Self::OutOfDate { .. } => codes::CONFLICT,
            Self::RateLimited { .. } => codes::RATE_LIMITED,
            Self::Internal(_) => codes::INTERNAL,
        }
    }

    /// The message clients see.
    pub fn message(&self) -> String {
        match self {
            Self::Unauthenticated(m) | Self::Forbidden(m) => m.to_string(),
            Self::NotFound(what) => format!("{what} not found"),
            Self::BadUserInput { message, .. }
            | Self::Conflict { message, .. }
            | Self::OutOfDate { message, .. } => message.to_string(),
            Self::RateLimited { retry_after_secs } => {
                format!("too many requests, retry in {retry_after_secs} s")
            }
            Self::Internal(_) => "internal server error".to_owned(),
        }
    }
}

/// The codes of DESIGN.md.
pub mod codes {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const CONFLICT: &str = "CONFLICT";
    pub const INTERNAL: &str = "INTERNAL";
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        if let ApiError::Internal(cause) = &err {
            tracing::error!(error = ?cause, "internal error");
        }
        async_graphql::Error::new(err.message()).extend_with(|_, ext| {
            ext.set("code", err.code());
            match &err {
                ApiError::BadUserInput { field, .. } => ext.set("field", field.as_ref()),
                ApiError::Conflict {
                    field: Some(field), ..
                } => ext.set("field", *field),
                ApiError::OutOfDate { version_vector, .. } => {
                    ext.set("field", "update");
                    ext.set("versionVector", version_vector.as_str())
                }
                ApiError::RateLimited { retry_after_secs } => {
                    ext.set("retryAfter", *retry_after_secs)
                }
                _ => {}
            }
        })
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Internal(err.into())
    }
}

/// A database unique-constraint violation, as the field whose value is taken.
///
/// Checks in code give the friendly answer first; this catches the race between two requests.
pub fn unique_violation(err: &sea_orm::DbErr, fields: &[&'static str]) -> Option<&'static str> {
    match err.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(detail)) => {
            fields.iter().copied().find(|field| detail.contains(field))
        }
        _ => None,
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
