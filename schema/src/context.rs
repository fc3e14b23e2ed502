//! Who is asking: the viewer of a request, read from its access token.

use entity::user::UserRole;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// A verified access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: UserRole,
    /// The refresh-token family this access token was issued for (one per sign-in).
    pub session_id: Uuid,
    /// When the access token expires (Unix seconds). A WebSocket keeps the token of its
    /// `connection_init`, so every operation checks it again.
    pub expires_at: i64,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == UserRole::Admin
    }
}

/// The viewer of one request (HTTP) or one connection (WebSocket).
#[derive(Clone, Debug, Default)]
pub enum Viewer {
    #[default]
    Anonymous,
    User(AuthUser),
    /// A token was sent but is expired or forged: answer UNAUTHENTICATED rather than
    /// silently treating the caller as anonymous, so clients know to refresh.
    InvalidToken,
    /// A valid token of a session that was signed out or revoked since.
    SignedOut,
}

impl Viewer {
    /// The signed-in user, if any.
    pub fn user(&self) -> ApiResult<Option<&AuthUser>> {
        match self {
            Self::Anonymous => Ok(None),
            Self::User(user) if user.expires_at > chrono::Utc::now().timestamp() => Ok(Some(user)),
            Self::User(_) => Err(invalid_token()),
            Self::InvalidToken => Err(invalid_token()),
            Self::SignedOut => Err(ApiError::unauthenticated(
                "this session was signed out; sign in again",
            )),
        }
    }

    /// The signed-in user, or UNAUTHENTICATED.
    pub fn require(&self) -> ApiResult<&AuthUser> {
        self.user()?
            .ok_or_else(|| ApiError::unauthenticated("sign in first"))
    }
}

fn invalid_token() -> ApiError {
    ApiError::unauthenticated("the access token is invalid or expired")
}

/// The viewer of the current GraphQL request.
pub trait ViewerExt {
    /// Who is asking. A token whose session has ended since it was issued (or since the
    /// WebSocket's `connection_init`) reads as [`Viewer::SignedOut`]: every resolver that acts
    /// for a user goes through here, so this is the one place revocation is checked.
    fn viewer(&self) -> &Viewer;
}

impl ViewerExt for async_graphql::Context<'_> {
    fn viewer(&self) -> &Viewer {
        static ANONYMOUS: Viewer = Viewer::Anonymous;
        static SIGNED_OUT: Viewer = Viewer::SignedOut;
        let viewer = self.data_opt::<Viewer>().unwrap_or(&ANONYMOUS);
        match (viewer, self.services().ok()) {
            (Viewer::User(user), Some(services))
                if services.revoked_sessions.is_revoked(user.session_id) =>
            {
                &SIGNED_OUT
            }
            _ => viewer,
        }
    }
}

/// The services behind the schema, as every resolver reaches them.
pub trait ServicesExt {
    /// The [`crate::Services`] the schema was built with ([`crate::build`] always adds
    /// them): INTERNAL rather than a panic should a schema ever lack them.
    fn services(&self) -> ApiResult<&crate::Services>;
}

impl ServicesExt for async_graphql::Context<'_> {
    fn services(&self) -> ApiResult<&crate::Services> {
        self.data_opt::<crate::Services>().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("the schema was built without its services"))
        })
    }
}

/// Most subscriptions one WebSocket connection may hold at once.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 64;

/// The subscriptions a WebSocket connection holds (connection data; absent over HTTP).
#[derive(Clone, Default)]
pub struct SubscriptionBudget(std::sync::Arc<std::sync::atomic::AtomicUsize>);

/// One subscription's place in its connection's budget, given back when dropped.
pub struct SubscriptionPermit(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl SubscriptionBudget {
    fn acquire(&self) -> ApiResult<SubscriptionPermit> {
        use std::sync::atomic::Ordering;
        let taken = self.0.fetch_add(1, Ordering::AcqRel);
        let permit = SubscriptionPermit(self.0.clone());
        if taken >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
            drop(permit);
            crate::metrics::rate_limited("subscriptions");
            return Err(ApiError::RateLimited {
                retry_after_secs: 1,
            });
        }
        Ok(permit)
    }
}

impl Drop for SubscriptionPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A place in the connection's subscription budget, for a stream to hold for as long as it
/// lives; RATE_LIMITED when the connection already holds [`MAX_SUBSCRIPTIONS_PER_CONNECTION`].
/// `None` off a connection (no budget).
pub fn subscription_permit(
    ctx: &async_graphql::Context<'_>,
) -> ApiResult<Option<SubscriptionPermit>> {
    ctx.data_opt::<SubscriptionBudget>()
        .map(SubscriptionBudget::acquire)
        .transpose()
}

/// Count `stream` against its connection's subscription budget for as long as it lives
/// (see [`subscription_permit`]).
pub fn budgeted<S: futures_util::Stream>(
    ctx: &async_graphql::Context<'_>,
    stream: S,
) -> ApiResult<impl futures_util::Stream<Item = S::Item> + use<S>> {
    use futures_util::StreamExt;
    let permit = subscription_permit(ctx)?;
    Ok(stream.map(move |item| {
        let _held = &permit;
        item
    }))
}
