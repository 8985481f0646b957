//! Bearer tokens to callers. HS256 with the shared secret by default;
//! RS256/RS384/RS512/PS256 and ES256/ES384 with a configured public key.
//! `exp` and `email` are required; `iss` and `aud` are checked when
//! configured. The user is provisioned on first sight.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::access::Caller;
use crate::domain::types::Email;
use crate::domain::{Error, Result};
use crate::store::Store;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How tokens are checked.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub hs256_secret: Secret,
    /// PEM of an RSA or EC public key, for RS*/PS*/ES* tokens.
    pub public_key_pem: Option<Vec<u8>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// The claims orgd reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub email: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// What orgd takes from a verified token: who it is. The registered claims
/// (`exp`, `nbf`, `iss`, `aud`) are checked by the validation itself, in
/// every shape RFC 7519 allows (numeric dates with fractions, `aud` as a
/// string or an array).
#[derive(Debug, Clone, Deserialize)]
pub struct Identity {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
}

enum PublicKey {
    Rsa(DecodingKey),
    Ec(DecodingKey),
}

pub struct Authenticator {
    hmac: DecodingKey,
    public: Option<PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
    store: Arc<dyn Store>,
}

impl Authenticator {
    pub fn new(config: &AuthConfig, store: Arc<dyn Store>) -> std::result::Result<Self, String> {
        if config.hs256_secret.expose().len() < 16 {
            return Err("the JWT secret must be at least 16 characters".into());
        }
        let public = match &config.public_key_pem {
            None => None,
            Some(pem) => {
                if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                    Some(PublicKey::Rsa(key))
                } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
                    Some(PublicKey::Ec(key))
                } else {
                    return Err("the JWT public key is neither an RSA nor an EC public key in PEM".into());
                }
            }
        };
        Ok(Self {
            hmac: DecodingKey::from_secret(config.hs256_secret.expose().as_bytes()),
            public,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            store,
        })
    }

    /// Checks a token's signature and claims.
    pub fn verify(&self, token: &str) -> Result<Identity> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Error::unauthenticated("the bearer token is malformed"))?;
        let key = match (header.alg, &self.public) {
            (Algorithm::HS256, _) => &self.hmac,
            (
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512,
                Some(PublicKey::Rsa(key)),
            ) => key,
            (Algorithm::ES256 | Algorithm::ES384, Some(PublicKey::Ec(key))) => key,
            (alg, _) => {
                return Err(Error::unauthenticated(format!(
                    "tokens signed with {alg:?} are not accepted"
                )));
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                validation.required_spec_claims.insert("iss".into());
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Identity>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let why = match e.kind() {
                K::ExpiredSignature => "the bearer token has expired",
                K::ImmatureSignature => "the bearer token is not valid yet (nbf)",
                K::InvalidSignature => "the bearer token's signature is invalid",
                K::InvalidIssuer => "the bearer token's issuer is not accepted",
                K::InvalidAudience => "the bearer token's audience is not accepted",
                K::MissingRequiredClaim(_) => "the bearer token lacks a required claim (exp, email)",
                K::Json(_) => "the bearer token's email claim is missing or not a string",
                _ => "the bearer token is invalid",
            };
            tracing::debug!(error = %e, "token rejected");
            Error::unauthenticated(why)
        })?;
        Ok(data.claims)
    }

    /// The caller behind a request's `authorization: Bearer` header.
    pub async fn authenticate(&self, headers: &tonic::codegen::http::HeaderMap) -> Result<Caller> {
        let (email, name) = self.identify(headers)?;
        self.resolve(&email, &name).await
    }

    /// Checks the bearer token and returns the email and display name it
    /// carries, without touching the database.
    pub fn identify(&self, headers: &tonic::codegen::http::HeaderMap) -> Result<(Email, String)> {
        let header = headers
            .get("authorization")
            .ok_or_else(|| Error::unauthenticated("missing authorization: Bearer token"))?;
        let value = header
            .to_str()
            .map_err(|_| Error::unauthenticated("the authorization header is malformed"))?;
        // The scheme is case-insensitive (RFC 7235).
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::unauthenticated("the authorization header must be 'Bearer <token>'"))?;
        let claims = self.verify(token)?;
        let email = Email::parse("email", &claims.email)
            .map_err(|_| Error::unauthenticated("the bearer token's email claim is not a valid email"))?;
        let name = claims.name.as_deref().map(str::trim).unwrap_or_default();
        let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
        Ok((email, name))
    }

    /// The user behind an identified token, provisioned on first sight.
    pub async fn resolve(&self, email: &Email, name: &str) -> Result<Caller> {
        let user = match self.store.user_by_email(email).await? {
            Some(user) if !user.display_name.is_empty() || name.is_empty() => user,
            _ => self.store.provision_user(email, name).await?,
        };
        Ok(Caller {
            user_id: user.id,
            email: user.email,
            is_superadmin: user.is_superadmin,
        })
    }
}

/// Signs an HS256 token (used by `orgd token` and by tests).
pub fn issue_token(secret: &Secret, claims: &Claims) -> std::result::Result<String, String> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .map_err(|e| format!("cannot sign token: {e}"))
}

/// Parses durations like `90s`, `30m`, `1h`, `7d`.
pub fn parse_ttl(raw: &str) -> std::result::Result<i64, String> {
    let raw = raw.trim();
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("invalid duration '{raw}': expected e.g. 30m, 1h, 7d"))?;
    let factor = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!("invalid duration unit in '{raw}': use s, m, h or d"));
        }
    };
    if n <= 0 {
        return Err("the duration must be positive".into());
    }
    n.checked_mul(factor)
        .ok_or_else(|| "the duration is too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        assert_eq!(parse_ttl("45"), Ok(45));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2hunter2hunter2")),
            "Secret(<redacted>)"
        );
    }
}
