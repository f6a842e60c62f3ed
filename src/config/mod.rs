//! Loading and validating the config file.
//!
//! Two stages: [`file`] mirrors the TOML exactly; [`load`] resolves it into [`Config`],
//! which is all the rest of the program sees. Every problem is collected, not only the
//! first, and each names the file, the line and the field. `biproxy check` and startup run
//! the same code.

mod access;
mod cache;
pub mod file;
mod model;
mod server;
mod source;
mod token;

pub use access::{Attribute, PolicyConfig, Role, UserConfig, WorkspaceConfig};
pub use cache::{AccelerationConfig, AdminConfig, CacheConfig, RollupConfig};
pub use model::{
    Aggregation, ColumnDoc, DimensionConfig, DimensionKind, FieldConfig, GeoRole, Granularity,
    HierarchyConfig, JoinConfig, MeasureConfig, MeasureDef,
};
pub use server::{parse_duration, AuditTarget, ServerConfig, TlsConfig};
pub use source::{Engine, SourceKind, SourceTls, SqlSourceConfig};
pub use token::TokenConfig;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use toml::Spanned;

/// The demo configuration compiled into the binary, served when no `--config` is given.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// The name shown for the built-in demo config in error messages.
pub const DEMO_CONFIG_NAME: &str = "<built-in config/demo.toml>";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener and limits.
    pub server: ServerConfig,
    /// Data sources by declaration order.
    pub sources: Vec<SourceConfig>,
    /// Workspaces (databases).
    pub workspaces: Vec<WorkspaceConfig>,
    /// Datasets of all workspaces.
    pub datasets: Vec<DatasetConfig>,
    /// Users who may log in.
    pub users: Vec<UserConfig>,
    /// Signed tokens accepted as passwords, when configured.
    pub token: Option<TokenConfig>,
    /// The result cache.
    pub cache: CacheConfig,
    /// The admin HTTP interface, when configured.
    pub admin: Option<AdminConfig>,
}

/// A source, resolved.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Name datasets refer to.
    pub name: String,
    /// Connector and its settings.
    pub kind: SourceKind,
}

/// A dataset, resolved (its SQL is planned later, against the source's tables).
#[derive(Debug, Clone)]
pub struct DatasetConfig {
    /// Workspace that shows it.
    pub workspace: String,
    /// Table name clients see.
    pub name: String,
    /// Source it reads.
    pub source: String,
    /// Description for tools.
    pub description: String,
    /// What the dataset is.
    pub query: DatasetQuery,
    /// Named aggregates.
    pub measures: Vec<MeasureConfig>,
    /// Column labels and descriptions.
    pub columns: Vec<ColumnDoc>,
    /// Calculated fields, in declaration order.
    pub fields: Vec<FieldConfig>,
    /// Typed dimensions.
    pub dimensions: Vec<DimensionConfig>,
    /// Drill paths over dimensions.
    pub hierarchies: Vec<HierarchyConfig>,
    /// Many-to-one joins from the table to dimension tables (star and snowflake models).
    pub joins: Vec<JoinConfig>,
    /// Row policies.
    pub policies: Vec<PolicyConfig>,
    /// How long its query results are reused; `None` = the `[cache]` default.
    pub cache_ttl: Option<std::time::Duration>,
    /// Its local columnar copy, if it has one.
    pub acceleration: Option<AccelerationConfig>,
    /// Its pre-aggregations.
    pub rollups: Vec<RollupConfig>,
    /// Where it was declared, for errors found when its SQL is planned.
    pub origin: Origin,
}

/// The definition of a dataset's rows.
#[derive(Debug, Clone)]
pub enum DatasetQuery {
    /// A table of the source, as is.
    Table(String),
    /// A SQL query on the source's tables.
    Sql(String),
}

/// A place in a config file, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct ConfigError {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line (0 when the problem is the file itself).
    pub line: usize,
    /// Dotted path of the field, e.g. `dataset[2].source`.
    pub field: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl ConfigError {
    /// An error located at `origin`.
    pub fn at(origin: &Origin, field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: origin.file.clone(),
            line: origin.line,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Read and validate the config file at `path`.
///
/// # Errors
/// Every problem found, each with file, line and field.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line: 0,
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, &name, base)
}

/// The built-in demo config; relative paths resolve against the working directory.
///
/// # Errors
/// Only if the built-in file is broken, which the tests rule out.
pub fn demo() -> Result<Config, ConfigErrors> {
    parse(DEMO_CONFIG, DEMO_CONFIG_NAME, Path::new("."))
}

/// Validate config text named `name`; relative paths resolve against `base`.
///
/// # Errors
/// Every problem found.
pub fn parse(text: &str, name: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let file: file::File = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or_default();
        ConfigErrors(vec![ConfigError {
            file: name.to_owned(),
            line,
            field: "(syntax)".into(),
            message: e.message().trim().to_owned(),
        }])
    })?;
    let mut r = Resolver {
        text,
        name,
        base,
        errors: Vec::new(),
    };
    let config = r.resolve(file);
    if r.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(r.errors))
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

struct Resolver<'a> {
    text: &'a str,
    name: &'a str,
    base: &'a Path,
    errors: Vec<ConfigError>,
}

impl Resolver<'_> {
    fn origin<T>(&self, value: &Spanned<T>) -> Origin {
        Origin {
            file: self.name.to_owned(),
            line: line_of(self.text, value.span().start),
        }
    }

    fn error<T>(&mut self, at: &Spanned<T>, field: impl Into<String>, message: impl Into<String>) {
        let origin = self.origin(at);
        self.errors.push(ConfigError::at(&origin, field, message));
    }

    /// An integer field within `min..=max`, or `default` when absent.
    fn ranged(
        &mut self,
        v: &Option<Spanned<i64>>,
        field: &str,
        min: i64,
        max: i64,
        default: usize,
    ) -> usize {
        match v {
            None => default,
            Some(n) if (min..=max).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.error(
                    n,
                    field,
                    format!("must be between {min} and {max}, got {}", n.get_ref()),
                );
                default
            }
        }
    }

    /// A path relative to the config file that must name an existing file.
    fn existing_file(&mut self, p: &Spanned<String>, field: &str) -> PathBuf {
        let path = self.base.join(p.get_ref());
        if !path.is_file() {
            self.error(p, field, format!("file {} does not exist", path.display()));
        }
        path
    }

    fn resolve(&mut self, file: file::File) -> Config {
        let server = self.server(&file.server);
        let users = self.users(file.users);
        let token = file.token.as_ref().map(|t| self.token(t));
        let sources = self.sources(file.sources);
        let dataset_names: Vec<(String, String)> = file
            .datasets
            .iter()
            .map(|d| {
                (
                    d.workspace.get_ref().clone(),
                    d.name.get_ref().to_lowercase(),
                )
            })
            .collect();
        let workspaces = self.workspaces(file.workspaces, &users, &dataset_names, token.is_some());
        let datasets = self.datasets(file.datasets, &workspaces, &sources);
        let cache = self.cache(&file.cache);
        let admin = file.admin.as_ref().and_then(|a| self.admin(a));
        Config {
            server,
            sources,
            workspaces,
            datasets,
            users,
            token,
            cache,
            admin,
        }
    }

    fn datasets(
        &mut self,
        ds: Vec<file::DatasetSection>,
        workspaces: &[WorkspaceConfig],
        sources: &[SourceConfig],
    ) -> Vec<DatasetConfig> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, d) in ds.into_iter().enumerate() {
            let key = (
                d.workspace.get_ref().clone(),
                d.name.get_ref().to_lowercase(),
            );
            if !seen.insert(key) {
                self.error(
                    &d.name,
                    format!("dataset[{i}].name"),
                    format!(
                        "duplicate dataset \"{}\" in workspace \"{}\"",
                        d.name.get_ref(),
                        d.workspace.get_ref()
                    ),
                );
            }
            if !workspaces.iter().any(|w| &w.name == d.workspace.get_ref()) {
                self.error(
                    &d.workspace,
                    format!("dataset[{i}].workspace"),
                    format!("no [[workspace]] named \"{}\"", d.workspace.get_ref()),
                );
            }
            if !sources.iter().any(|s| &s.name == d.source.get_ref()) {
                self.error(
                    &d.source,
                    format!("dataset[{i}].source"),
                    format!("no [[source]] named \"{}\"", d.source.get_ref()),
                );
            }
            for (j, join) in d.joins.iter().enumerate() {
                if let Some(s) = join.source.as_ref() {
                    if !sources.iter().any(|x| &x.name == s.get_ref()) {
                        self.error(
                            s,
                            format!("dataset[{i}].join[{j}].source"),
                            format!("no [[source]] named \"{}\"", s.get_ref()),
                        );
                    }
                }
            }
            let query = match (d.table, d.sql) {
                (Some(t), None) => DatasetQuery::Table(t.into_inner()),
                (None, Some(s)) => DatasetQuery::Sql(s.into_inner()),
                _ => {
                    self.error(
                        &d.name,
                        format!("dataset[{i}]"),
                        "give exactly one of `table` or `sql`",
                    );
                    continue;
                }
            };
            let measures = self.measures(&d.measures, i);
            let columns = d
                .columns
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let field = format!("dataset[{i}].column[{j}]");
                    let hidden_from =
                        self.role_list(&c.hidden_from, &format!("{field}.hidden_from"));
                    let masked_for = self.role_list(&c.masked_for, &format!("{field}.masked_for"));
                    if !masked_for.is_empty() && c.mask.is_none() {
                        self.error(
                            &c.name,
                            format!("{field}.mask"),
                            "`masked_for` needs a `mask` expression",
                        );
                    }
                    ColumnDoc {
                        name: c.name.get_ref().to_lowercase(),
                        description: c.description.clone(),
                        label: c.label.clone(),
                        hidden_from,
                        masked_for,
                        mask: c.mask.as_ref().map(|m| m.get_ref().clone()),
                        origin: self.origin(c.mask.as_ref().unwrap_or(&c.name)),
                    }
                })
                .collect();
            let fields = self.fields(&d.fields);
            let dimensions = self.dimensions(&d.dimensions, i);
            let hierarchies = self.hierarchies(&d.hierarchies, &dimensions, i);
            let base = match &query {
                DatasetQuery::Table(t) => Some(t.to_lowercase()),
                DatasetQuery::Sql(_) => None,
            };
            let joins = self.joins(&d.joins, base.as_deref(), i);
            let policies = self.policies(&d.policies, i);
            let cache_ttl = d
                .cache_ttl
                .as_ref()
                .and_then(|t| self.duration_field(t, &format!("dataset[{i}].cache_ttl")));
            let acceleration = d
                .acceleration
                .as_ref()
                .map(|a| self.acceleration(a, &format!("dataset[{i}].acceleration")));
            let rollups = self.rollups(&d.rollups, &format!("dataset[{i}].rollup"));
            if !rollups.is_empty() && acceleration.is_none() {
                self.error(
                    &d.name,
                    format!("dataset[{i}].rollup"),
                    "rollups are built from the local copy: add [dataset.acceleration]",
                );
            }
            if !joins.is_empty() && matches!(query, DatasetQuery::Sql(_)) {
                self.error(
                    &d.name,
                    format!("dataset[{i}].join"),
                    "joins need a `table` base; with `sql`, write the joins in the SQL",
                );
            }
            out.push(DatasetConfig {
                origin: self.origin(&d.name),
                measures,
                fields,
                dimensions,
                hierarchies,
                joins,
                policies,
                columns,
                cache_ttl,
                acceleration,
                rollups,
                workspace: d.workspace.into_inner(),
                name: d.name.into_inner(),
                source: d.source.into_inner(),
                description: d.description,
                query,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_demo_config_is_valid() {
        let config = demo().unwrap();
        assert!(config.workspaces.iter().any(|w| w.name == "demo"));
        assert!(config.datasets.iter().any(|d| d.name == "sales"));
    }

    #[test]
    fn every_error_is_reported_with_file_line_and_field() {
        let text = r#"
[[source]]
name = "lake"
kind = "oracle"

[[workspace]]
name = "w"
members = ["nobody"]

[[dataset]]
workspace = "w"
name = "d"
source = "missing"
table = "t"

[[source]]
name = "pg"
kind = "postgres"
database = "shop"
user = "u"
password = "${BIPROXY_TEST_SURELY_UNSET}"
pool_timeout = "soon"
"#;
        let errs = parse(text, "bad.toml", Path::new(".")).unwrap_err();
        let lines: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "bad.toml:4: source[0].kind: unknown source kind \"oracle\"; supported: lake, postgres, mysql, sqlserver",
                "bad.toml:17: source[1].host: is required for a database source",
                "bad.toml:21: source[1].password: environment variable BIPROXY_TEST_SURELY_UNSET is not set (it is named as ${BIPROXY_TEST_SURELY_UNSET})",
                "bad.toml:22: source[1].pool_timeout: \"soon\" is not a duration such as 0, 250ms, 30s, 5min or 2h",
                "bad.toml:8: workspace[0].members[0]: no [[user]] named \"nobody\" (and no [token] section for token logins)",
                "bad.toml:13: dataset[0].source: no [[source]] named \"missing\"",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_the_line() {
        let errs = parse(
            "[server]\nlisten = \"x\"\nbogus = 1\n",
            "f.toml",
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(errs.0.len(), 1);
        assert_eq!(errs.0[0].line, 3);
        assert!(
            errs.0[0].message.contains("unknown field `bogus`"),
            "{}",
            errs.0[0].message
        );
    }
}
