//! `[cache]` and `[admin]`, and a dataset's `cache_ttl`, `[dataset.acceleration]` and
//! `[[dataset.rollup]]`: everything that makes answers fast without changing them.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::{file, parse_duration, Resolver};

/// `[cache]`, resolved.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Whether results are kept at all.
    pub enabled: bool,
    /// Bytes of results held at most.
    pub max_bytes: u64,
    /// Largest single result kept.
    pub max_entry_bytes: u64,
    /// Default time a result is reused.
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            enabled: true,
            max_bytes: 256 << 20,
            max_entry_bytes: 16 << 20,
            ttl: Duration::from_secs(300),
        }
    }
}

/// `[admin]`, resolved.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where the HTTP interface listens.
    pub listen: SocketAddr,
    /// Bearer token POST requests must carry, if set.
    pub token: Option<String>,
}

/// `[dataset.acceleration]`, resolved.
#[derive(Debug, Clone)]
pub struct AccelerationConfig {
    /// Rebuild period; `None` = only on demand.
    pub refresh: Option<Duration>,
}

/// `[[dataset.rollup]]`, resolved (columns and measures are checked against the planned
/// dataset later, in `accel`).
#[derive(Debug, Clone)]
pub struct RollupConfig {
    /// Name shown by `EXPLAIN`.
    pub name: String,
    /// Group-by columns.
    pub dimensions: Vec<String>,
    /// Measure names.
    pub measures: Vec<String>,
    /// Where it was declared.
    pub origin: super::Origin,
}

impl Resolver<'_> {
    pub(super) fn cache(&mut self, c: &file::CacheSection) -> CacheConfig {
        let default = CacheConfig::default();
        let max_bytes = self.ranged(&c.max_bytes, "cache.max_bytes", 0, 1 << 40, 256 << 20) as u64;
        let max_entry_bytes = self.ranged(
            &c.max_entry_bytes,
            "cache.max_entry_bytes",
            0,
            1 << 40,
            (max_bytes / 16) as usize,
        ) as u64;
        if let Some(e) = c
            .max_entry_bytes
            .as_ref()
            .filter(|_| max_entry_bytes > max_bytes)
        {
            self.error(
                e,
                "cache.max_entry_bytes",
                "must not exceed cache.max_bytes",
            );
        }
        let ttl = match &c.ttl {
            None => default.ttl,
            Some(t) => self.duration_field(t, "cache.ttl").unwrap_or(default.ttl),
        };
        CacheConfig {
            enabled: c.enabled.unwrap_or(true) && max_bytes > 0,
            max_bytes,
            max_entry_bytes,
            ttl,
        }
    }

    pub(super) fn admin(&mut self, a: &file::AdminSection) -> Option<AdminConfig> {
        let listen = match a.listen.get_ref().parse() {
            Ok(l) => l,
            Err(_) => {
                self.error(
                    &a.listen,
                    "admin.listen",
                    format!(
                        "\"{}\" is not an ADDRESS:PORT such as 127.0.0.1:15433",
                        a.listen.get_ref()
                    ),
                );
                return None;
            }
        };
        let token = a
            .token
            .as_ref()
            .map(|_| self.secret(&a.token, "admin.token", &a.listen, false))
            .filter(|t| !t.is_empty());
        Some(AdminConfig { listen, token })
    }

    /// A duration, or an error at its line.
    pub(super) fn duration_field(&mut self, t: &Spanned<String>, field: &str) -> Option<Duration> {
        match parse_duration(t.get_ref()) {
            Ok(d) => Some(d),
            Err(m) => {
                self.error(t, field, m);
                None
            }
        }
    }

    pub(super) fn acceleration(
        &mut self,
        a: &Spanned<file::AccelerationSection>,
        field: &str,
    ) -> AccelerationConfig {
        let refresh = a
            .get_ref()
            .refresh
            .as_ref()
            .and_then(|r| self.duration_field(r, &format!("{field}.refresh")))
            .filter(|d| !d.is_zero());
        AccelerationConfig { refresh }
    }

    pub(super) fn rollups(&mut self, rs: &[file::RollupSection], field: &str) -> Vec<RollupConfig> {
        let mut out: Vec<RollupConfig> = Vec::new();
        for (k, r) in rs.iter().enumerate() {
            let name = r.name.get_ref().to_lowercase();
            if out.iter().any(|o| o.name == name) {
                self.error(
                    &r.name,
                    format!("{field}[{k}].name"),
                    format!("duplicate rollup \"{name}\""),
                );
            }
            if r.measures.is_empty() {
                self.error(
                    &r.name,
                    format!("{field}[{k}].measures"),
                    "a rollup needs at least one measure",
                );
            }
            out.push(RollupConfig {
                name,
                dimensions: r
                    .dimensions
                    .iter()
                    .map(|d| d.get_ref().to_lowercase())
                    .collect(),
                measures: r
                    .measures
                    .iter()
                    .map(|m| m.get_ref().to_lowercase())
                    .collect(),
                origin: self.origin(&r.name),
            });
        }
        out
    }
}
