//! `[token]`: signed tokens (JWT) as passwords, for users an identity provider vouches
//! for. The keys are read and checked here, so a bad secret or JWKS file stops start-up
//! with its line, not the first login.

use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::DecodingKey;
use toml::Spanned;

use super::{file, parse_duration, Resolver};

/// `[token]`, resolved.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// HS256 shared secret.
    pub secret: Option<Vec<u8>>,
    /// RS256/ES256 public keys.
    pub keys: Vec<Jwk>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// The claim holding the login name.
    pub user_claim: String,
    /// Clock skew allowed for `exp` and `nbf`.
    pub leeway: Duration,
}

/// An HS256 secret shorter than this is refused: it could be guessed offline from one token.
const MIN_SECRET_BYTES: usize = 32;

impl Resolver<'_> {
    pub(super) fn token(&mut self, t: &Spanned<file::TokenSection>) -> TokenConfig {
        let section = t.get_ref();
        let secret = section.secret.as_ref().map(|s| {
            let value = self.secret(&Some(s.clone()), "token.secret", t, true);
            if value.len() < MIN_SECRET_BYTES {
                self.error(
                    s,
                    "token.secret",
                    format!("an HS256 secret needs at least {MIN_SECRET_BYTES} bytes"),
                );
            }
            value.into_bytes()
        });
        let keys = section
            .jwks_file
            .as_ref()
            .map(|f| self.jwks(f))
            .unwrap_or_default();
        if secret.is_none() && section.jwks_file.is_none() {
            self.error(
                t,
                "token",
                "give `secret` (HS256) or `jwks_file` (RS256, ES256), or both",
            );
        }
        let leeway = match &section.leeway {
            None => Duration::from_secs(30),
            Some(l) => parse_duration(l.get_ref()).unwrap_or_else(|m| {
                self.error(l, "token.leeway", m);
                Duration::ZERO
            }),
        };
        TokenConfig {
            secret,
            keys,
            issuer: section.issuer.as_ref().map(|s| s.get_ref().clone()),
            audience: section.audience.as_ref().map(|s| s.get_ref().clone()),
            user_claim: section
                .user_claim
                .as_ref()
                .map_or_else(|| "sub".to_owned(), |c| c.get_ref().clone()),
            leeway,
        }
    }

    /// The keys of a JWKS file, each checked to be a usable public key.
    fn jwks(&mut self, f: &Spanned<String>) -> Vec<Jwk> {
        let path = self.existing_file(f, "token.jwks_file");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Vec::new();
        };
        let set: JwkSet = match serde_json::from_str(&text) {
            Ok(set) => set,
            Err(e) => {
                self.error(
                    f,
                    "token.jwks_file",
                    format!("{} is not a JWKS document: {e}", path.display()),
                );
                return Vec::new();
            }
        };
        for (i, key) in set.keys.iter().enumerate() {
            if let Err(e) = DecodingKey::from_jwk(key) {
                let kid = key.common.key_id.as_deref().unwrap_or("(no kid)");
                self.error(
                    f,
                    "token.jwks_file",
                    format!("key {i} ({kid}) of {} is unusable: {e}", path.display()),
                );
            }
        }
        set.keys
    }
}
