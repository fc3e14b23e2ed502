//! Access tokens (HS256 JWTs) and refresh tokens (random, stored hashed).

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use entity::user::UserRole;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::context::AuthUser;
use crate::error::{ApiError, ApiResult};

const ISSUER: &str = "codecrafter";

/// Signs and verifies access tokens; knows the token lifetimes.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
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
    pub fn new(secret: &SecretString, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn issue_access(
        &self,
        user_id: Uuid,
        role: UserRole,
        session_id: Uuid,
    ) -> ApiResult<AccessToken> {
        let now = Utc::now();
        let expires_at = now + self.access_ttl;
        let claims = Claims {
            sub: user_id,
            role,
            sid: session_id,
            iss: ISSUER.to_owned(),
            iat: now.timestamp(),
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
        )
    }

    #[test]
    fn round_trip_and_forgery() -> ApiResult<()> {
        let issuer = issuer("a-secret-that-is-long-enough-for-hs256");
        let (user, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let token = issuer.issue_access(user, UserRole::Admin, sid)?.token;
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
    fn refresh_tokens_are_random_and_hashed() {
        let (a, hash_a) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(hash_refresh_token(&a), hash_a);
        assert_eq!(hash_a.len(), 64);
    }
}
