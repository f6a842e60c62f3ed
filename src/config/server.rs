//! `[server]`: where biproxy listens, its limits, TLS and the audit log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{file, Resolver};

/// `[server]`, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Connections served at once.
    pub max_connections: usize,
    /// Default statement timeout; `None` = no timeout.
    pub statement_timeout: Option<Duration>,
    /// Largest client message accepted.
    pub max_message_bytes: usize,
    /// TLS, when configured.
    pub tls: Option<TlsConfig>,
    /// Where the audit log goes, if anywhere.
    pub audit_log: Option<AuditTarget>,
}

/// The audit log's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// TLS settings with paths resolved against the config file's directory.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Refuse plaintext clients.
    pub required: bool,
}

impl Resolver<'_> {
    pub(super) fn server(&mut self, s: &file::ServerSection) -> ServerConfig {
        let listen = match &s.listen {
            None => SocketAddr::from(([127, 0, 0, 1], 15432)),
            Some(l) => l.get_ref().parse().unwrap_or_else(|_| {
                self.error(
                    l,
                    "server.listen",
                    format!(
                        "\"{}\" is not an ADDRESS:PORT such as 127.0.0.1:15432",
                        l.get_ref()
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 15432))
            }),
        };
        let max_connections = self.ranged(
            &s.max_connections,
            "server.max_connections",
            1,
            100_000,
            256,
        );
        let max_message_bytes = self.ranged(
            &s.max_message_bytes,
            "server.max_message_bytes",
            1 << 16,
            1 << 30,
            64 << 20,
        );
        let statement_timeout = match &s.statement_timeout {
            None => None,
            Some(t) => match parse_duration(t.get_ref()) {
                Ok(d) if d.is_zero() => None,
                Ok(d) => Some(d),
                Err(m) => {
                    self.error(t, "server.statement_timeout", m);
                    None
                }
            },
        };
        let tls = s.tls.as_ref().map(|t| self.tls(t));
        let audit_log = s.audit_log.as_ref().map(|a| match a.get_ref().as_str() {
            "stdout" | "-" => AuditTarget::Stdout,
            path => AuditTarget::File(self.base.join(path)),
        });
        ServerConfig {
            listen,
            max_connections,
            statement_timeout,
            max_message_bytes,
            tls,
            audit_log,
        }
    }

    fn tls(&mut self, t: &file::TlsSection) -> TlsConfig {
        let cert = self.existing_file(&t.cert, "server.tls.cert");
        let key = self.existing_file(&t.key, "server.tls.key");
        TlsConfig {
            cert,
            key,
            required: t.required,
        }
    }
}

/// Parse `0`, `250ms`, `30s`, `5min`, `2h` (PostgreSQL's units); a bare number is milliseconds,
/// as in PostgreSQL's `statement_timeout`.
///
/// # Errors
/// A message saying which forms are accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim().trim_matches('\'');
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("\"{text}\" is not a duration such as 0, 250ms, 30s, 5min or 2h"))?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1000,
        "min" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => {
            return Err(format!(
                "\"{text}\" has an unknown unit; use ms, s, min, h or d"
            ))
        }
    };
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_postgres_units() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1500").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5min").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("soon").is_err());
    }
}
