//! JWTs compatible with the reference's simplejwt tokens (HS256; `token_type`, `exp`, `iat`,
//! `jti`, `user_id` as a string) plus an `iss` claim. Validation pins the algorithm, requires
//! `exp`/`iss`, and checks the token type, so a refresh token never works as an access token.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Access or refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// Short-lived, sent as `Authorization: Bearer`.
    Access,
    /// Exchanged for a new access token at `/api/token/refresh/`.
    Refresh,
}

/// The claims of our tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub token_type: TokenType,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    /// The user's id, as a string like simplejwt (an integer is accepted too).
    #[serde(deserialize_with = "string_or_int")]
    pub user_id: String,
    pub iss: String,
}

fn string_or_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        I(i64),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::I(i) => i.to_string(),
    })
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("Token is expired")]
    Expired,
    #[error("Token has wrong type")]
    WrongType,
    #[error("Token is invalid")]
    Invalid,
}

/// Signing and verification keys, built once at start-up.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    access_ttl: u64,
    refresh_ttl: u64,
}

impl JwtKeys {
    /// Builds the keys from the secret and the configured issuer and lifetimes.
    pub fn new(secret: &[u8], issuer: &str, access_ttl: u64, refresh_ttl: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_aud = false;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_string(),
            access_ttl,
            refresh_ttl,
        }
    }

    /// Issues a token of the given type for a user.
    pub fn issue(&self, user_id: i64, token_type: TokenType) -> String {
        let now = now();
        let ttl = match token_type {
            TokenType::Access => self.access_ttl,
            TokenType::Refresh => self.refresh_ttl,
        };
        let claims = Claims {
            token_type,
            exp: now + ttl,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            user_id: user_id.to_string(),
            iss: self.issuer.clone(),
        };
        // HS256 encoding of a plain struct cannot fail with a valid key.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// Verifies a token and its type; returns the user id.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<i64, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.token_type != expected {
            return Err(TokenError::WrongType);
        }
        data.claims.user_id.parse().map_err(|_| TokenError::Invalid)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn keys() -> JwtKeys {
        JwtKeys::new(b"0123456789abcdef0123456789abcdef", "aq", 60, 120)
    }

    #[test]
    fn round_trip_and_type_check() {
        let k = keys();
        let access = k.issue(7, TokenType::Access);
        assert_eq!(k.verify(&access, TokenType::Access), Ok(7));
        assert_eq!(
            k.verify(&access, TokenType::Refresh),
            Err(TokenError::WrongType)
        );
        let refresh = k.issue(7, TokenType::Refresh);
        assert_eq!(
            k.verify(&refresh, TokenType::Access),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn forged_tokens_are_rejected() {
        let k = keys();
        let other = JwtKeys::new(b"another-key-another-key-another-k", "aq", 60, 120);
        assert_eq!(
            k.verify(&other.issue(1, TokenType::Access), TokenType::Access),
            Err(TokenError::Invalid)
        );
        // alg: none with the same claims
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = b64.encode(format!(
            r#"{{"token_type":"access","exp":{},"iat":0,"jti":"x","user_id":"1","iss":"aq"}}"#,
            now() + 60
        ));
        assert_eq!(
            k.verify(&format!("{header}.{body}."), TokenType::Access),
            Err(TokenError::Invalid)
        );
        // expired (exp in the past, otherwise valid)
        let claims = Claims {
            token_type: TokenType::Access,
            exp: now() - 10,
            iat: now() - 70,
            jti: "x".into(),
            user_id: "1".into(),
            iss: "aq".into(),
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap();
        assert_eq!(k.verify(&t, TokenType::Access), Err(TokenError::Expired));
        // wrong issuer
        let foreign = JwtKeys::new(b"0123456789abcdef0123456789abcdef", "other", 60, 60);
        assert_eq!(
            k.verify(&foreign.issue(1, TokenType::Access), TokenType::Access),
            Err(TokenError::Invalid)
        );
    }
}
