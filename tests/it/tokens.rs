//! Signed tokens as passwords, with keys generated here: an HS256 shared secret, an ES256
//! key made by rcgen and an RS256 key made by `openssl`, the public ones published in a
//! JWKS file. A valid token's claims steer the row policies; an expired, forged,
//! wrongly addressed or incomplete token is refused with 28P01 and a message that does not
//! say why.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::support::{demo_config_text, rows, sqlstate, table, TestServer};

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";
const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "biproxy";

/// Keys made for one test run, and the JWKS file that publishes the public halves.
struct Keys {
    dir: PathBuf,
    es256: EncodingKey,
    rs256: EncodingKey,
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Keys {
    fn jwks(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }
}

fn keys() -> Keys {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("biproxy-it-jwt-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = ec.public_key_raw(); // 0x04 || X || Y
    assert_eq!(point.len(), 65);
    let rsa_pem = dir.join("rsa.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&rsa_pem)
        .output()
        .expect("openssl is installed");
    assert!(made.status.success(), "{made:?}");
    let modulus = std::process::Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&rsa_pem)
        .output()
        .unwrap();
    let hex = String::from_utf8(modulus.stdout).unwrap();
    let hex = hex.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
         "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..])},
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
         "n": B64URL.encode(&n), "e": "AQAB"},
    ]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
    Keys {
        es256: EncodingKey::from_ec_der(&ec.serialize_der()),
        rs256: EncodingKey::from_rsa_pem(&std::fs::read(&rsa_pem).unwrap()).unwrap(),
        dir,
    }
}

/// The demo with tokens on: strangers with a valid token are analysts; `gina` is a member
/// without a password, a viewer granted only `sales`.
async fn server(keys: &Keys) -> TestServer {
    let text = demo_config_text("")
        .replace(
            "members = [\"alice\", \"bob\", \"carol\", \"dave\"]",
            "members = [\"alice\", \"bob\", \"carol\", \"dave\", \"gina\"]\ntoken_role = \"analyst\"",
        )
        .replace(
            "roles = { carol = \"admin\", dave = \"viewer\" }",
            "roles = { carol = \"admin\", dave = \"viewer\", gina = \"viewer\" }",
        )
        .replace(
            "grants = { dave = [\"sales\"] }",
            "grants = { dave = [\"sales\"], gina = [\"sales\"] }",
        )
        + &format!(
            "\n[token]\nsecret = {SECRET:?}\njwks_file = {:?}\nissuer = {ISSUER:?}\naudience = {AUDIENCE:?}\n",
            keys.jwks().display().to_string()
        );
    let config = biproxy::config::parse(&text, "tokens.toml", std::path::Path::new("."))
        .expect("token config is valid");
    TestServer::with_config(config).await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a valid token for `user`, with `extra` merged in (a `null` removes a claim).
fn claims(user: &str, extra: &Value) -> Value {
    let mut c =
        json!({"sub": user, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now()});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn signed(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, key).unwrap()
}

/// `count(*)` of `sales` in the given regions, as the admin sees it.
async fn sales_in(server: &TestServer, regions: &str) -> Vec<Vec<String>> {
    let carol = server.connect("carol").await;
    rows(
        &carol,
        &format!("SELECT count(*) FROM sales WHERE region IN ({regions})"),
    )
    .await
}

#[tokio::test]
async fn a_valid_token_logs_in_and_its_claims_steer_the_policies() {
    let keys = keys();
    let server = server(&keys).await;
    let count = "SELECT count(*) FROM sales";

    let frank = server
        .try_connect(
            "frank",
            &hs256(&claims("frank", &json!({"region": "North"}))),
            "demo",
        )
        .await
        .expect("HS256 token logs in");
    assert_eq!(
        rows(&frank, count).await,
        sales_in(&server, "'North'").await
    );
    assert_eq!(
        rows(&frank, "SELECT current_user").await,
        table(&[["frank"]])
    );

    let es = signed(
        Algorithm::ES256,
        "ec-1",
        &keys.es256,
        &claims("hana", &json!({"regions": ["East", "West"]})),
    );
    let hana = server
        .try_connect("hana", &es, "demo")
        .await
        .expect("ES256 token logs in");
    assert_eq!(
        rows(&hana, count).await,
        sales_in(&server, "'East', 'West'").await
    );

    let rs = signed(
        Algorithm::RS256,
        "rsa-1",
        &keys.rs256,
        &claims("ivan", &json!({"region": "South"})),
    );
    let ivan = server
        .try_connect("ivan", &rs, "demo")
        .await
        .expect("RS256 token logs in");
    assert_eq!(rows(&ivan, count).await, sales_in(&server, "'South'").await);

    // A token without the attribute a policy needs sees no rows, like a user without it.
    let bare = server
        .try_connect("jo", &hs256(&claims("jo", &json!({}))), "demo")
        .await
        .expect("a token without attributes logs in");
    assert_eq!(rows(&bare, count).await, table(&[["0"]]));

    // A member without a password logs in with a token and keeps their role and grants.
    let gina = server
        .try_connect(
            "gina",
            &hs256(&claims("gina", &json!({"region": "West"}))),
            "demo",
        )
        .await
        .expect("a member logs in with a token");
    assert_eq!(rows(&gina, count).await, sales_in(&server, "'West'").await);
    let err = gina
        .simple_query("SELECT count(*) FROM customers")
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate(&err),
        "42P01",
        "a viewer sees only the granted datasets"
    );

    // Configured users still log in with their passwords.
    let alice = server.connect("alice").await;
    assert_eq!(rows(&alice, count).await, sales_in(&server, "'East'").await);
}

#[tokio::test]
async fn a_bad_token_is_refused_with_28p01_and_no_reason() {
    let keys = keys();
    let server = server(&keys).await;
    let other_secret = EncodingKey::from_secret(b"another-secret-that-is-32-bytes-long!!");
    let valid = claims("frank", &json!({"region": "North"}));
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            hs256(&claims("frank", &json!({"exp": now() - 3600}))),
        ),
        (
            "not valid yet",
            hs256(&claims("frank", &json!({"nbf": now() + 3600}))),
        ),
        (
            "wrong HS256 secret",
            encode(&Header::new(Algorithm::HS256), &valid, &other_secret).unwrap(),
        ),
        (
            "ES256 signature by the RSA kid",
            signed(Algorithm::ES256, "rsa-1", &keys.es256, &valid),
        ),
        (
            "unknown kid",
            signed(Algorithm::ES256, "ec-2", &keys.es256, &valid),
        ),
        (
            "wrong audience",
            hs256(&claims("frank", &json!({"aud": "another-app"}))),
        ),
        (
            "wrong issuer",
            hs256(&claims("frank", &json!({"iss": "https://evil.test"}))),
        ),
        (
            "missing exp",
            hs256(&claims("frank", &json!({"exp": null}))),
        ),
        (
            "missing aud",
            hs256(&claims("frank", &json!({"aud": null}))),
        ),
        (
            "missing sub",
            hs256(&claims("frank", &json!({"sub": null}))),
        ),
        ("someone else's token", hs256(&claims("alice2", &json!({})))),
        ("not a token", "frank".to_owned()),
        ("alg none", unsigned(&valid)),
        ("tampered payload", tampered(&hs256(&valid))),
    ];
    for (case, token) in cases {
        let err = server
            .try_connect("frank", &token, "demo")
            .await
            .err()
            .unwrap_or_else(|| panic!("{case}: the token was accepted"));
        assert_eq!(sqlstate(&err), "28P01", "{case}: {err:?}");
        let message = err.as_db_error().unwrap().message();
        assert_eq!(
            message, "password authentication failed for user \"frank\"",
            "{case}: the client must not learn why"
        );
    }
    // The server is still serving.
    let frank = server
        .try_connect("frank", &hs256(&valid), "demo")
        .await
        .expect("a valid token still works");
    assert_eq!(rows(&frank, "SELECT 1").await, table(&[["1"]]));
}

#[tokio::test]
async fn token_users_need_a_token_role_or_membership() {
    let keys = keys();
    let text = demo_config_text("")
        + &format!(
            "\n[token]\nsecret = {SECRET:?}\nissuer = {ISSUER:?}\naudience = {AUDIENCE:?}\n"
        );
    let config = biproxy::config::parse(&text, "t.toml", std::path::Path::new(".")).unwrap();
    let server = TestServer::with_config(config).await;
    let err = server
        .try_connect("frank", &hs256(&claims("frank", &json!({}))), "demo")
        .await
        .expect_err("a stranger without token_role is refused");
    assert_eq!(sqlstate(&err), "28000");
    drop(keys);
}

#[test]
fn token_config_mistakes_name_their_line() {
    let base = demo_config_text("");
    // (config text, the line the error must point at, its field and message)
    let cases = [
        (
            format!("{base}\n[token]\nsecret = \"short\"\n"),
            "secret = \"short\"",
            "token.secret: an HS256 secret needs at least 32 bytes",
        ),
        (
            format!("{base}\n[token]\njwks_file = \"/nonexistent/jwks.json\"\n"),
            "jwks_file = \"/nonexistent/jwks.json\"",
            "token.jwks_file: file /nonexistent/jwks.json does not exist",
        ),
        (
            base.replace("grants = {", "token_role = \"viewer\"\ngrants = {"),
            "token_role = \"viewer\"",
            "workspace[0].token_role: token logins need a [token] section",
        ),
    ];
    for (text, at, message) in cases {
        let line = text.lines().position(|l| l == at).expect("the line") + 1;
        let err = biproxy::config::parse(&text, "t.toml", std::path::Path::new("."))
            .expect_err(message)
            .to_string();
        assert!(err.contains(&format!("t.toml:{line}: {message}")), "{err}");
    }
    let neither = format!("{base}\n[token]\nissuer = \"x\"\n");
    let err = biproxy::config::parse(&neither, "n.toml", std::path::Path::new("."))
        .expect_err("no key")
        .to_string();
    assert!(
        err.contains("token: give `secret` (HS256) or `jwks_file`"),
        "{err}"
    );
}

/// A token with `alg: none` and no signature.
fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64URL.encode(r#"{"alg":"none","typ":"JWT"}"#),
        B64URL.encode(claims.to_string())
    )
}

/// A valid token whose payload was changed after signing (a different region).
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
    payload["region"] = json!("East");
    format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(payload.to_string()),
        parts[2]
    )
}
