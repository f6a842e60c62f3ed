//! The `biproxy` command itself: `check` and `hash-password`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{demo_config, rows, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_biproxy");

/// A file in the temp dir, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("biproxy-it-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn check_reports_every_error_with_file_line_and_field() {
    let file = TempFile::new(
        "bad.toml",
        "[server]\nlisten = \"nowhere\"\n\n[[workspace]]\nname = \"w\"\nmembers = [\"ghost\"]\n\n\
         [[user]]\nname = \"u\"\npassword = \"plaintext\"\n",
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&file.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = file.0.display();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("{name}:2: server.listen: \"nowhere\" is not an ADDRESS:PORT such as 127.0.0.1:15432"),
            format!("{name}:10: user[0].password: malformed SCRAM verifier: must start with SCRAM-SHA-256$; make one with `biproxy hash-password`"),
            format!("{name}:6: workspace[0].members[0]: no [[user]] named \"ghost\" (and no [token] section for token logins)"),
            format!("{name}: 3 error(s)"),
        ]
    );
}

#[test]
fn serve_refuses_to_start_on_a_broken_config() {
    let file = TempFile::new("bad-serve.toml", "[server]\nmax_connections = 0\n");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&file.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:2: server.max_connections: must be between 1 and 100000, got 0",
            file.0.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn hash_password_makes_a_verifier_that_logs_in() {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret-pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let verifier = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");

    let mut config = demo_config("");
    config.users.push(biproxy::config::UserConfig {
        name: "erin".into(),
        verifier: biproxy::auth::scram::Verifier::parse(&verifier).unwrap(),
        attributes: Default::default(),
    });
    config.workspaces[0].members.push("erin".into());
    let server = TestServer::with_config(config).await;
    let client = server
        .try_connect("erin", "s3cret-pass", "demo")
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SELECT current_user").await,
        vec![vec!["erin".to_owned()]]
    );
}
