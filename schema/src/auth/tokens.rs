//! Access tokens (HS256 JWTs) and refresh tokens (stored hashed): a sign-in's first refresh
//! token is random, each successor is derived from its predecessor with a server key (see
//! [`TokenIssuer::successor_refresh_token`]).

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use entity::user::UserRole;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::context::AuthUser;
use crate::error::{ApiError, ApiResult};

const ISSUER: &str = "codecrafter";
/// Seconds past `exp` an access token is still accepted (clock skew between nodes).
pub const LEEWAY_SECS: u64 = 5;

/// Signs and verifies access tokens; knows the token lifetimes.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Derives a refresh token's successor; keyed with the signing secret.
    successor_key: Hmac<Sha256>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// How long after a refresh token was rotated presenting it again still gets the same
    /// new pair (two tabs refreshing at once) instead of counting as reuse.
    pub refresh_reuse_grace: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: UserRole,
    sid: Uuid,
    iss: String,
    iat: i64,
    exp: i64,
}

/// A freshly signed access token.
pub struct AccessToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl TokenIssuer {
    pub fn new(
        secret: &SecretString,
        access_ttl: Duration,
        refresh_ttl: Duration,
        refresh_reuse_grace: Duration,
    ) -> anyhow::Result<Self> {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = LEEWAY_SECS;
        let successor_key = Hmac::<Sha256>::new_from_slice(key)
            .map_err(|_| anyhow::anyhow!("the token key cannot key HMAC-SHA256"))?;
        Ok(Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            successor_key,
            access_ttl,
            refresh_ttl,
            refresh_reuse_grace,
        })
    }

    /// How long a revoked session must stay refused: as long as its last access token
    /// can be accepted.
    pub fn revocation_ttl(&self) -> Duration {
        self.access_ttl + Duration::from_secs(LEEWAY_SECS)
    }

    /// An access token issued at `issued_at`. The same arguments give the same token (HS256
    /// is deterministic), which is how a refresh presented twice gets the same pair.
    pub fn issue_access(
        &self,
        user_id: Uuid,
        role: UserRole,
        session_id: Uuid,
        issued_at: DateTime<Utc>,
    ) -> ApiResult<AccessToken> {
        let expires_at = issued_at + self.access_ttl;
        let claims = Claims {
            sub: user_id,
            role,
            sid: session_id,
            iss: ISSUER.to_owned(),
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        Ok(AccessToken { token, expires_at })
    }

    /// The user an access token speaks for, or `None` when it is forged, malformed or expired.
    pub fn verify_access(&self, token: &str) -> Option<AuthUser> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        Some(AuthUser {
            id: data.claims.sub,
            role: data.claims.role,
            session_id: data.claims.sid,
            expires_at: data.claims.exp,
        })
    }
}

impl TokenIssuer {
    /// The refresh token that replaces `presented`, and its hash: HMAC-SHA256 of the
    /// presented token under the server key. Being a function of the old token, it can be
    /// handed out again to a second presentation within the grace window without the database
    /// (or anything else) ever holding it in plain text; without the key it is as unguessable
    /// as a random token. Each token is spent once, so each successor is issued once.
    pub fn successor_refresh_token(&self, presented: &str) -> (String, String) {
        let mut mac = self.successor_key.clone();
        mac.update(b"codecrafter refresh-token successor\0");
        mac.update(presented.as_bytes());
        let bytes = mac.finalize().into_bytes();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let hash = hash_refresh_token(&token);
        (token, hash)
    }
}

/// A new random refresh token: what the client keeps, and the hash the database keeps.
pub fn new_refresh_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(secret: &str) -> TokenIssuer {
        TokenIssuer::new(
            &SecretString::from(secret),
            Duration::from_secs(900),
            Duration::from_secs(3600),
            Duration::from_secs(10),
        )
        .expect("any key length works")
    }

    #[test]
    fn round_trip_and_forgery() -> ApiResult<()> {
        let issuer = issuer("a-secret-that-is-long-enough-for-hs256");
        let (user, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let token = issuer
            .issue_access(user, UserRole::Admin, sid, Utc::now())?
            .token;
        let verified = issuer.verify_access(&token);
        let verified = verified.expect("verifies");
        assert_eq!(
            (verified.id, verified.role, verified.session_id),
            (user, UserRole::Admin, sid)
        );
        assert!(verified.expires_at > chrono::Utc::now().timestamp());
        assert_eq!(
            self::issuer("another-secret-that-is-long-enough").verify_access(&token),
            None
        );
        assert_eq!(issuer.verify_access("not.a.jwt"), None);
        Ok(())
    }

    #[test]
    fn expired_tokens_are_refused() -> ApiResult<()> {
        let issuer = issuer("a-secret-that-is-long-enough-for-hs256");
        let past = Utc::now().timestamp() - 60;
        let claims = Claims {
            sub: Uuid::new_v4(),
            role: UserRole::User,
            sid: Uuid::new_v4(),
            iss: ISSUER.to_owned(),
            iat: past - 900,
            exp: past,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &issuer.encoding)
            .map_err(ApiError::internal)?;
        assert_eq!(issuer.verify_access(&token), None);
        Ok(())
    }

    #[test]
    fn same_issue_time_same_access_token() -> ApiResult<()> {
        let issuer = issuer("a-secret-that-is-long-enough-for-hs256");
        let (user, sid, at) = (Uuid::new_v4(), Uuid::new_v4(), Utc::now());
        let first = issuer.issue_access(user, UserRole::User, sid, at)?;
        let again = issuer.issue_access(user, UserRole::User, sid, at)?;
        assert_eq!(
            (first.token, first.expires_at),
            (again.token, again.expires_at)
        );
        Ok(())
    }

    #[test]
    fn successors_are_derived_with_the_server_key() {
        let issuer = issuer("a-secret-that-is-long-enough-for-hs256");
        let (old, _) = new_refresh_token();
        let (next, hash) = issuer.successor_refresh_token(&old);
        assert_eq!(
            issuer.successor_refresh_token(&old),
            (next.clone(), hash.clone())
        );
        assert_eq!(hash_refresh_token(&next), hash);
        assert_eq!(next.len(), old.len());
        assert_ne!(issuer.successor_refresh_token(&next).0, next);
        let other = self::issuer("another-secret-that-is-long-enough");
        assert_ne!(other.successor_refresh_token(&old).0, next);
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, hash_a) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(hash_refresh_token(&a), hash_a);
        assert_eq!(hash_a.len(), 64);
    }
}
