//! `[[source]]` sections: which connector, where, and with which limits.
//!
//! Secrets stay out of config files: `user`, `password`, `host` and `database` may be
//! written as `${VAR}`, read from the environment at load time; a missing variable is a
//! config error on that line, not an empty password.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{file, parse_duration, Resolver};
use crate::source::lake::demo::DemoSpec;

/// The connector of a source.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// A directory of Parquet tables read in-process.
    Lake {
        /// The directory, resolved against the config file's directory.
        path: PathBuf,
        /// Generate the demo data into `path` when it is missing.
        demo: Option<DemoSpec>,
    },
    /// A database reached over the network; dataset queries are pushed down to it as SQL.
    Sql(SqlSourceConfig),
}

/// The database engine behind a SQL source: decides the driver and the SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL (and wire-compatible engines).
    Postgres,
    /// MySQL and MariaDB.
    MySql,
    /// Microsoft SQL Server.
    SqlServer,
}

impl Engine {
    /// The name used in config files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
            Engine::SqlServer => "sqlserver",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::MySql => 3306,
            Engine::SqlServer => 1433,
        }
    }
}

/// TLS to a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceTls {
    /// Plain TCP.
    Disable,
    /// TLS, verifying the server certificate against the web roots and `ca_file`.
    Require {
        /// Extra trusted CA certificates (PEM).
        ca_file: Option<PathBuf>,
    },
}

/// A database source, resolved.
#[derive(Debug, Clone)]
pub struct SqlSourceConfig {
    /// Driver and dialect.
    pub engine: Engine,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database to connect to.
    pub database: String,
    /// Schema whose tables datasets name.
    pub schema: String,
    /// Login user.
    pub user: String,
    /// Password (after `${VAR}` substitution).
    pub password: String,
    /// Connections kept at most.
    pub pool_size: usize,
    /// Wait for a free connection at most this long, then fail with 53300.
    pub pool_timeout: Duration,
    /// Opening a connection may take this long.
    pub connect_timeout: Duration,
    /// Statement timeout on the source; `None` = none.
    pub statement_timeout: Option<Duration>,
    /// How often to try again when the source was down at start-up.
    pub retry_interval: Duration,
    /// TLS to the source.
    pub tls: SourceTls,
}

impl Resolver<'_> {
    pub(super) fn sources(
        &mut self,
        sources: Vec<file::SourceSection>,
    ) -> Vec<super::SourceConfig> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, s) in sources.into_iter().enumerate() {
            if !seen.insert(s.name.get_ref().clone()) {
                self.error(
                    &s.name,
                    format!("source[{i}].name"),
                    format!("duplicate source \"{}\"", s.name.get_ref()),
                );
            }
            let engine = match s.kind.get_ref().as_str() {
                "lake" => None,
                "postgres" | "postgresql" => Some(Engine::Postgres),
                "mysql" | "mariadb" => Some(Engine::MySql),
                "sqlserver" | "mssql" => Some(Engine::SqlServer),
                other => {
                    self.error(
                        &s.kind,
                        format!("source[{i}].kind"),
                        format!(
                            "unknown source kind \"{other}\"; supported: lake, postgres, mysql, sqlserver"
                        ),
                    );
                    continue;
                }
            };
            let kind = match engine {
                None => self.lake(&s, i),
                Some(engine) => Some(SourceKind::Sql(self.sql_source(&s, i, engine))),
            };
            if let Some(kind) = kind {
                out.push(super::SourceConfig {
                    name: s.name.get_ref().clone(),
                    kind,
                });
            }
        }
        out
    }

    fn lake(&mut self, s: &file::SourceSection, i: usize) -> Option<SourceKind> {
        let Some(path) = &s.path else {
            self.error(
                &s.name,
                format!("source[{i}].path"),
                "a lake source needs `path`, the directory of its tables",
            );
            return None;
        };
        let demo = s.demo.as_ref().map(|d| self.demo(d, i));
        Some(SourceKind::Lake {
            path: self.base.join(path.get_ref()),
            demo,
        })
    }

    fn demo(&mut self, d: &file::DemoSection, i: usize) -> DemoSpec {
        let mut spec = DemoSpec::default();
        if let Some(orders) = &d.orders {
            spec.orders = self.ranged(
                &Some(orders.clone()),
                &format!("source[{i}].demo.orders"),
                1,
                100_000_000,
                0,
            ) as u64;
        }
        if let Some(seed) = d.seed {
            spec.seed = seed;
        }
        spec
    }

    fn sql_source(&mut self, s: &file::SourceSection, i: usize, engine: Engine) -> SqlSourceConfig {
        let field = |f: &str| format!("source[{i}].{f}");
        let host = self.secret(&s.host, &field("host"), &s.name, true);
        let database = self.secret(&s.database, &field("database"), &s.name, true);
        let user = self.secret(&s.user, &field("user"), &s.name, true);
        let password = self.secret(&s.password, &field("password"), &s.name, false);
        let port = self.ranged(
            &s.port,
            &field("port"),
            1,
            65535,
            engine.default_port().into(),
        ) as u16;
        let schema = s.schema.as_ref().map_or_else(
            || match engine {
                Engine::Postgres => "public".to_owned(),
                Engine::MySql => database.clone(),
                Engine::SqlServer => "dbo".to_owned(),
            },
            |v| v.get_ref().clone(),
        );
        let pool_size = self.ranged(&s.pool_size, &field("pool_size"), 1, 10_000, 8);
        let pool_timeout = self.duration(&s.pool_timeout, &field("pool_timeout"), 5);
        let connect_timeout = self.duration(&s.connect_timeout, &field("connect_timeout"), 5);
        let retry_interval = self.duration(&s.retry_interval, &field("retry_interval"), 10);
        let statement_timeout =
            Some(self.duration(&s.statement_timeout, &field("statement_timeout"), 0))
                .filter(|d| !d.is_zero());
        let tls = match s.tls.as_ref().map(|t| t.get_ref().as_str()) {
            None | Some("disable") => SourceTls::Disable,
            Some("require") => SourceTls::Require {
                ca_file: s
                    .ca_file
                    .as_ref()
                    .map(|p| self.existing_file(p, &field("ca_file"))),
            },
            Some(other) => {
                let at = s.tls.as_ref().unwrap_or(&s.name);
                self.error(
                    at,
                    field("tls"),
                    format!("unknown TLS mode \"{other}\"; use disable or require"),
                );
                SourceTls::Disable
            }
        };
        SqlSourceConfig {
            engine,
            host,
            port,
            database,
            schema,
            user,
            password,
            pool_size,
            pool_timeout,
            connect_timeout,
            statement_timeout,
            retry_interval,
            tls,
        }
    }

    /// A duration field; `default_secs` when absent.
    fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        default_secs: u64,
    ) -> Duration {
        match v {
            None => Duration::from_secs(default_secs),
            Some(t) => parse_duration(t.get_ref()).unwrap_or_else(|m| {
                self.error(t, field, m);
                Duration::from_secs(default_secs)
            }),
        }
    }

    /// A string field that may be `${VAR}`. A required field that is absent is an error at
    /// the source's name.
    pub(super) fn secret<T>(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        owner: &Spanned<T>,
        required: bool,
    ) -> String {
        let Some(v) = v else {
            if required {
                self.error(owner, field, "is required for a database source");
            }
            return String::new();
        };
        match substitute_env(v.get_ref(), |name| std::env::var(name).ok()) {
            Ok(s) => s,
            Err(m) => {
                self.error(v, field, m);
                String::new()
            }
        }
    }
}

/// Replace every `${VAR}` in `text` by the variable's value.
///
/// # Errors
/// A variable that is not set, or a `${` without its `}`.
fn substitute_env(text: &str, var: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("\"{text}\" has a `${{` without its closing `}}`"))?;
        let name = &after[..end];
        let value = var(name).ok_or_else(|| {
            format!("environment variable {name} is not set (it is named as ${{{name}}})")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::substitute_env;

    #[test]
    fn env_substitution_reads_variables_and_names_missing_ones() {
        let var = |n: &str| (n == "PW").then(|| "s3cret".to_owned());
        assert_eq!(substitute_env("${PW}", var).unwrap(), "s3cret");
        assert_eq!(substitute_env("a-${PW}-b", var).unwrap(), "a-s3cret-b");
        assert_eq!(substitute_env("plain", var).unwrap(), "plain");
        let err = substitute_env("${NOPE}", var).unwrap_err();
        assert!(err.contains("NOPE is not set"), "{err}");
        assert!(substitute_env("${PW", var).is_err());
    }
}
