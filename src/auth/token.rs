//! Signed tokens (JWT) as the password: how an identity provider's single sign-on, or an
//! application embedding a report for its own users, reaches biproxy without a password
//! per person. The token's signature, expiry, issuer and audience are checked; its
//! claims become the user's attributes, which row policies read.
//!
//! Accepted: HS256 with the configured shared secret, RS256 and ES256 with a public key
//! from the configured JWKS file (chosen by `kid`, or the only key of the right kind).
//! Invariant: why a token was refused goes to the log, never to the client.

use std::collections::BTreeMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::config::{Attribute, TokenConfig};

/// Claims that say something about the token, not the user: never attributes.
const REGISTERED: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// Why a token was refused (for the log; the client only learns 28P01).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("not a signed token: {0}")]
    Malformed(String),
    /// `none`, or an algorithm biproxy does not accept.
    #[error("algorithm {0} is not accepted; use HS256, RS256 or ES256")]
    Algorithm(String),
    /// No configured key can check this token.
    #[error("no key for this token: {0}")]
    NoKey(String),
    /// The signature does not match: forged or signed with another key.
    #[error("signature does not match")]
    Signature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("token is not valid yet (nbf)")]
    NotYet,
    /// `iss` is not the configured issuer.
    #[error("issuer is not the configured one")]
    Issuer,
    /// `aud` does not name the configured audience.
    #[error("audience does not include the configured one")]
    Audience,
    /// A claim that must be there is not.
    #[error("claim \"{0}\" is missing")]
    MissingClaim(String),
    /// The token is someone else's than the user name the client logged in with.
    #[error("token is for \"{token}\", not for the login name \"{login}\"")]
    OtherUser {
        /// The user claim's value.
        token: String,
        /// The startup message's user.
        login: String,
    },
}

/// What a valid token says of its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The login name (the user claim).
    pub user: String,
    /// Every other non-registered claim with a SQL literal, by name.
    pub attributes: BTreeMap<String, Attribute>,
}

/// The kind of public key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
}

/// Checks tokens against the configured keys and claims.
pub struct TokenVerifier {
    secret: Option<DecodingKey>,
    keys: Vec<(Option<String>, KeyKind, DecodingKey)>,
    config: TokenConfig,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.secret.is_some())
            .field("public_keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Prepare the keys of a validated `[token]` section (unusable keys were refused at load).
    pub fn new(config: &TokenConfig) -> TokenVerifier {
        let keys = config
            .keys
            .iter()
            .filter_map(|jwk| {
                let kind = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => KeyKind::Rsa,
                    AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                        KeyKind::P256
                    }
                    _ => return None,
                };
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((jwk.common.key_id.clone(), kind, key))
            })
            .collect();
        TokenVerifier {
            secret: config.secret.as_deref().map(DecodingKey::from_secret),
            keys,
            config: config.clone(),
        }
    }

    /// Check `token`, presented as the password of `login`.
    ///
    /// # Errors
    /// Why it is refused.
    pub fn verify(&self, token: &str, login: &str) -> Result<Claims, TokenError> {
        let header =
            decode_header(token.trim()).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let key = self.key_for(&header)?;
        let claims = decode::<Map<String, Value>>(token.trim(), key, &self.validation(header.alg))
            .map_err(|e| refusal(e.kind()))?
            .claims;
        let claim = &self.config.user_claim;
        let user = claims
            .get(claim)
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::MissingClaim(claim.clone()))?;
        if user != login {
            return Err(TokenError::OtherUser {
                token: user.to_owned(),
                login: login.to_owned(),
            });
        }
        Ok(Claims {
            user: user.to_owned(),
            attributes: attributes(&claims, claim),
        })
    }

    fn key_for(&self, header: &Header) -> Result<&DecodingKey, TokenError> {
        let kind = match header.alg {
            Algorithm::HS256 => {
                return self
                    .secret
                    .as_ref()
                    .ok_or_else(|| TokenError::NoKey("HS256 needs [token] secret".into()))
            }
            Algorithm::RS256 => KeyKind::Rsa,
            Algorithm::ES256 => KeyKind::P256,
            other => return Err(TokenError::Algorithm(format!("{other:?}"))),
        };
        let mut candidates = self
            .keys
            .iter()
            .filter(|(kid, k, _)| *k == kind && (header.kid.is_none() || *kid == header.kid));
        match (candidates.next(), candidates.next()) {
            (Some((_, _, key)), None) => Ok(key),
            (Some(_), Some(_)) => Err(TokenError::NoKey(format!(
                "several {:?} keys in the JWKS file and the token names no kid",
                header.alg
            ))),
            (None, _) => Err(TokenError::NoKey(format!(
                "no {:?} key{} in the JWKS file",
                header.alg,
                header
                    .kid
                    .as_ref()
                    .map(|k| format!(" with kid \"{k}\""))
                    .unwrap_or_default()
            ))),
        }
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.leeway.as_secs();
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.config.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.config.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }
}

/// The claims a policy may read: all but the registered ones and the user claim.
fn attributes(claims: &Map<String, Value>, user_claim: &str) -> BTreeMap<String, Attribute> {
    claims
        .iter()
        .filter(|(k, _)| !REGISTERED.contains(&k.as_str()) && k.as_str() != user_claim)
        .filter_map(|(k, v)| match Attribute::from_json(v) {
            Some(a) => Some((k.clone(), a)),
            None => {
                tracing::debug!(claim = %k, "token claim ignored: not a scalar or a list of scalars");
                None
            }
        })
        .collect()
}

fn refusal(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYet,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::InvalidAlgorithm => TokenError::Algorithm("not matching the key".into()),
        other => TokenError::Malformed(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{encode, EncodingKey};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(&TokenConfig {
            secret: Some(SECRET.to_vec()),
            keys: Vec::new(),
            issuer: Some("idp".into()),
            audience: Some("biproxy".into()),
            user_claim: "sub".into(),
            leeway: Duration::ZERO,
        })
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let v = verifier();
        let ok = json!({"sub": "ann", "iss": "idp", "aud": "biproxy", "exp": now() + 60});
        let with = |k: &str, val: Value| {
            let mut c = ok.clone();
            c[k] = val;
            token(&c)
        };
        let without = |k: &str| {
            let mut c = ok.clone();
            c.as_object_mut().unwrap().remove(k);
            token(&c)
        };
        assert_eq!(
            v.verify(&with("exp", json!(now() - 10)), "ann"),
            Err(TokenError::Expired)
        );
        assert_eq!(
            v.verify(&with("nbf", json!(now() + 600)), "ann"),
            Err(TokenError::NotYet)
        );
        assert_eq!(
            v.verify(&with("iss", json!("other")), "ann"),
            Err(TokenError::Issuer)
        );
        assert_eq!(
            v.verify(&with("aud", json!("other")), "ann"),
            Err(TokenError::Audience)
        );
        assert_eq!(
            v.verify(&without("exp"), "ann"),
            Err(TokenError::MissingClaim("exp".into()))
        );
        assert_eq!(
            v.verify(&without("sub"), "ann"),
            Err(TokenError::MissingClaim("sub".into()))
        );
        assert_eq!(
            v.verify(&token(&ok), "bob"),
            Err(TokenError::OtherUser {
                token: "ann".into(),
                login: "bob".into()
            })
        );
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &ok,
            &EncodingKey::from_secret(b"another secret of enough length!!"),
        )
        .unwrap();
        assert_eq!(v.verify(&forged, "ann"), Err(TokenError::Signature));
        assert!(matches!(
            v.verify("not.a.token", "ann"),
            Err(TokenError::Malformed(_))
        ));
        let rs = Header::new(Algorithm::RS256);
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&rs).unwrap(),
        );
        let no_key = format!("{header}.e30.c2ln");
        assert!(matches!(
            v.verify(&no_key, "ann"),
            Err(TokenError::NoKey(_))
        ));
    }

    #[test]
    fn claims_become_attributes_but_registered_ones_do_not() {
        let v = verifier();
        let claims = json!({
            "sub": "ann", "iss": "idp", "aud": "biproxy", "exp": now() + 60, "iat": now(),
            "region": "East", "regions": ["North", "South"], "level": 3, "vip": true,
            "nested": {"a": 1}, "name": "O'Brien"
        });
        let got = v.verify(&token(&claims), "ann").expect("valid");
        assert_eq!(got.user, "ann");
        let keys: Vec<&str> = got.attributes.keys().map(String::as_str).collect();
        assert_eq!(keys, ["level", "name", "region", "regions", "vip"]);
        assert_eq!(got.attributes["region"], Attribute::One("'East'".into()));
        assert_eq!(got.attributes["name"], Attribute::One("'O''Brien'".into()));
        assert_eq!(
            got.attributes["regions"],
            Attribute::Many(vec!["'North'".into(), "'South'".into()])
        );
        assert_eq!(got.attributes["level"], Attribute::One("3".into()));
        assert_eq!(got.attributes["vip"], Attribute::One("TRUE".into()));
    }
}
