//! GraphQL resolvers of authentication.

use crate::context::ServicesExt;
use async_graphql::{Context, InputObject, Object, Result};
use chrono::{DateTime, Utc};

use super::service::{self, Session, SignUp};
use crate::context::ViewerExt;
use crate::users::Account;

/// Tokens for a signed-in session.
pub struct AuthPayload(Session);

/// Tokens for a signed-in session.
#[Object]
impl AuthPayload {
    /// Send as `Authorization: Bearer <token>`; valid for 15 minutes.
    async fn access_token(&self) -> &str {
        &self.0.access_token
    }
    /// When the access token stops working.
    async fn access_token_expires_at(&self) -> DateTime<Utc> {
        self.0.access_token_expires_at
    }
    /// Single use: trade it with `refreshToken` for a new pair before it expires (presented
    /// again within a few seconds, it gets the same pair).
    async fn refresh_token(&self) -> &str {
        &self.0.refresh_token
    }
    /// When the refresh token stops working; sign in again after that.
    async fn refresh_token_expires_at(&self) -> DateTime<Utc> {
        self.0.refresh_token_expires_at
    }
    /// The signed-in account.
    async fn user(&self) -> Account {
        Account(self.0.user.clone())
    }
}

/// A new account.
#[derive(InputObject)]
pub struct SignUpInput {
    /// 3–32 characters of `[a-z0-9_-]`.
    pub username: String,
    /// Any valid address; stored lower-cased and unique.
    pub email: String,
    /// 8–128 characters.
    pub password: String,
    /// Defaults to the username.
    pub display_name: Option<String>,
}

/// Credentials for `signIn`.
#[derive(InputObject)]
pub struct SignInInput {
    /// A username or an email address.
    pub login: String,
    /// The account's password.
    pub password: String,
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Create an account and sign in to it.
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The new account: username, email, password and an optional display name."
        )]
        input: SignUpInput,
    ) -> Result<AuthPayload> {
        let input = SignUp {
            username: input.username,
            email: input.email,
            password: input.password,
            display_name: input.display_name,
        };
        Ok(AuthPayload(
            service::sign_up(ctx.services()?.auth(), input).await?,
        ))
    }

    /// Sign in by username or email.
    async fn sign_in(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The login (username or email) and password.")] input: SignInInput,
    ) -> Result<AuthPayload> {
        let services = ctx.services()?;
        Ok(AuthPayload(
            service::sign_in(
                services.auth(),
                &input.login,
                input.password,
                client_ip(ctx),
            )
            .await?,
        ))
    }

    /// Trade a refresh token for a new access and refresh token. Each refresh token works
    /// once: presented again within `REFRESH_REUSE_GRACE_SECS` (10 s; two tabs refreshing at
    /// once) it answers the same pair, later it signs out that whole session.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The refresh token of the last sign-in or refresh.")]
        refresh_token: String,
    ) -> Result<AuthPayload> {
        Ok(AuthPayload(
            service::refresh(ctx.services()?.auth(), &refresh_token).await?,
        ))
    }

    /// End the session the refresh token belongs to, its access tokens included. Always
    /// answers true.
    async fn sign_out(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The refresh token of the session to end.")] refresh_token: String,
    ) -> Result<bool> {
        service::sign_out(ctx.services()?.auth(), &refresh_token).await?;
        Ok(true)
    }

    /// Change the password; every other session of the account is signed out, its access
    /// tokens included.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The password in use now.")] current_password: String,
        #[graphql(desc = "The new password, 8–128 characters.")] new_password: String,
    ) -> Result<bool> {
        let viewer = ctx.viewer().require()?;
        service::change_password(
            ctx.services()?.auth(),
            viewer,
            current_password,
            new_password,
        )
        .await?;
        Ok(true)
    }
}

/// The caller's address, when the transport knows it.
fn client_ip(ctx: &Context<'_>) -> Option<std::net::IpAddr> {
    ctx.data_opt::<crate::budgets::ClientIp>().map(|ip| ip.0)
}
