//! SCRAM-SHA-256 (RFC 5802 / RFC 7677) against stored verifiers.
//!
//! biproxy stores PostgreSQL-format verifiers, `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`,
//! never passwords. A verifier is not password-equivalent: it lets the server check a client
//! proof, but not log in as the user. pgwire's stock SCRAM needs the salted password, which
//! is, so the small server side lives here.
//!
//! Channel binding (`SCRAM-SHA-256-PLUS`) is not offered; a client that insists on it is refused.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::constant_time_eq;

/// Iterations used for new verifiers; PostgreSQL's default.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The SASL mechanism name sent in `AuthenticationSASL`.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// Why a SCRAM exchange or a verifier was rejected. The text goes to the log, never to
/// the client, which only learns "password authentication failed".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    /// The stored verifier is not in PostgreSQL's format.
    #[error("malformed SCRAM verifier: {0}")]
    BadVerifier(&'static str),
    /// The client sent a message that is not valid SCRAM.
    #[error("malformed SCRAM message: {0}")]
    BadMessage(&'static str),
    /// The client requires channel binding, which is not offered.
    #[error("client requires channel binding, which biproxy does not offer")]
    ChannelBinding,
    /// The proof does not match: wrong password.
    #[error("client proof does not match the stored verifier")]
    WrongProof,
}

/// A parsed verifier. Holds no password-equivalent secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Derive a verifier from a password with a fresh random salt, as `biproxy hash-password` does.
    pub fn generate(password: &str, iterations: u32) -> Verifier {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Verifier::derive(password, &salt, iterations)
    }

    /// Derive the verifier of `password` for a given salt and iteration count.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Parse `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    ///
    /// # Errors
    /// [`ScramError::BadVerifier`] naming the part that is wrong.
    pub fn parse(text: &str) -> Result<Verifier, ScramError> {
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(ScramError::BadVerifier("must start with SCRAM-SHA-256$"))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(ScramError::BadVerifier("missing '$' before the keys"))?;
        let (iter, salt) = params.split_once(':').ok_or(ScramError::BadVerifier(
            "missing ':' between iterations and salt",
        ))?;
        let (stored, server) = keys.split_once(':').ok_or(ScramError::BadVerifier(
            "missing ':' between StoredKey and ServerKey",
        ))?;
        let iterations: u32 = iter
            .parse()
            .map_err(|_| ScramError::BadVerifier("iterations is not a number"))?;
        if iterations == 0 {
            return Err(ScramError::BadVerifier("iterations must be positive"));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::BadVerifier("salt is not base64"))?;
        Ok(Verifier {
            iterations,
            salt,
            stored_key: decode_key(stored)?,
            server_key: decode_key(server)?,
        })
    }

    /// Start an exchange: answer the client-first message with the server-first message.
    ///
    /// # Errors
    /// A malformed client-first message, or one that requires channel binding.
    pub fn start(&self, client_first: &[u8]) -> Result<(String, Exchange), ScramError> {
        let mut server_nonce = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut server_nonce);
        self.start_with_nonce(client_first, &B64.encode(server_nonce))
    }

    fn start_with_nonce(
        &self,
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<(String, Exchange), ScramError> {
        let client_first =
            std::str::from_utf8(client_first).map_err(|_| ScramError::BadMessage("not UTF-8"))?;
        let (gs2, bare) = split_gs2_header(client_first)?;
        let client_nonce = attribute(bare, 'r').ok_or(ScramError::BadMessage("missing nonce"))?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.salt),
            self.iterations
        );
        let exchange = Exchange {
            verifier: self.clone(),
            gs2_header: gs2.to_owned(),
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((server_first, exchange))
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// An exchange waiting for the client-final message.
#[derive(Debug)]
pub struct Exchange {
    verifier: Verifier,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl Exchange {
    /// Check the client proof; on success return the server-final message (`v=...`).
    ///
    /// # Errors
    /// [`ScramError::WrongProof`] for a wrong password; `BadMessage` for a malformed message.
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let client_final =
            std::str::from_utf8(client_final).map_err(|_| ScramError::BadMessage("not UTF-8"))?;
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(ScramError::BadMessage("missing proof"))?;
        let binding = attribute(without_proof, 'c').ok_or(ScramError::BadMessage("missing c="))?;
        if binding != B64.encode(&self.gs2_header) {
            return Err(ScramError::BadMessage(
                "channel binding data does not match",
            ));
        }
        if attribute(without_proof, 'r') != Some(self.nonce.as_str()) {
            return Err(ScramError::BadMessage("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::BadMessage("proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::BadMessage("proof has the wrong length"));
        }
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let computed: [u8; 32] = Sha256::digest(&client_key).into();
        if !constant_time_eq(&computed, &self.verifier.stored_key) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

fn decode_key(text: &str) -> Result<[u8; 32], ScramError> {
    B64.decode(text)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or(ScramError::BadVerifier("key is not 32 bytes of base64"))
}

/// Split `gs2-header` (`n,,` or `y,,`, optionally with an authzid) from the bare message.
fn split_gs2_header(message: &str) -> Result<(&str, &str), ScramError> {
    match message.as_bytes().first() {
        Some(b'n') | Some(b'y') => {}
        Some(b'p') => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::BadMessage("bad gs2 header")),
    }
    let first_comma = message
        .find(',')
        .ok_or(ScramError::BadMessage("bad gs2 header"))?;
    let second_comma = message[first_comma + 1..]
        .find(',')
        .map(|i| first_comma + 1 + i)
        .ok_or(ScramError::BadMessage("bad gs2 header"))?;
    Ok((&message[..=second_comma], &message[second_comma + 1..]))
}

fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Play the client side of RFC 5802 so the server side is checked end to end.
    fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> String {
        let salt = B64.decode(attribute(server_first, 's').unwrap()).unwrap();
        let iterations: u32 = attribute(server_first, 'i').unwrap().parse().unwrap();
        let nonce = attribute(server_first, 'r').unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn verifier_round_trips_through_its_text_form() {
        let v = Verifier::derive("alice", b"0123456789abcdef", 4096);
        assert_eq!(Verifier::parse(&v.to_string()).unwrap(), v);
    }

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677, section 3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::derive("pencil", &salt, 4096);
        let (server_first, exchange) = v
            .start_with_nonce(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .unwrap();
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let server_final = exchange
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(
            server_final,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn right_password_is_accepted_and_server_signs() {
        let v = Verifier::generate("s3cret", 4096);
        let bare = "n=,r=clientnonce123";
        let (server_first, exchange) = v.start(format!("n,,{bare}").as_bytes()).unwrap();
        assert!(server_first.starts_with("r=clientnonce123"));
        let final_msg = client_final("s3cret", bare, &server_first);
        let server_final = exchange.finish(final_msg.as_bytes()).unwrap();
        assert!(server_final.starts_with("v="));
    }

    #[test]
    fn wrong_password_is_rejected() {
        let v = Verifier::generate("s3cret", 4096);
        let bare = "n=,r=abc";
        let (server_first, exchange) = v.start(format!("n,,{bare}").as_bytes()).unwrap();
        let final_msg = client_final("wrong", bare, &server_first);
        assert_eq!(
            exchange.finish(final_msg.as_bytes()),
            Err(ScramError::WrongProof)
        );
    }

    #[test]
    fn channel_binding_is_refused() {
        let v = Verifier::generate("x", 4096);
        assert_eq!(
            v.start(b"p=tls-server-end-point,,n=,r=abc").unwrap_err(),
            ScramError::ChannelBinding
        );
    }

    #[test]
    fn malformed_verifiers_say_what_is_wrong() {
        assert_eq!(
            Verifier::parse("md5abc"),
            Err(ScramError::BadVerifier("must start with SCRAM-SHA-256$"))
        );
        assert_eq!(
            Verifier::parse("SCRAM-SHA-256$x:AAAA$a:b"),
            Err(ScramError::BadVerifier("iterations is not a number"))
        );
    }
}
