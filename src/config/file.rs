//! The config file exactly as written: serde types that mirror the TOML.
//!
//! Unknown keys are rejected (`deny_unknown_fields`), and fields that are cross-checked
//! later keep their position (`Spanned`) so errors can name the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// `[server]`: listener, TLS, limits.
    #[serde(default)]
    pub server: ServerSection,
    /// `[[source]]`: where data lives.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceSection>,
    /// `[[workspace]]`: the databases clients connect to.
    #[serde(default, rename = "workspace")]
    pub workspaces: Vec<WorkspaceSection>,
    /// `[[dataset]]`: the tables a workspace shows.
    #[serde(default, rename = "dataset")]
    pub datasets: Vec<DatasetSection>,
    /// `[[user]]`: who may log in.
    #[serde(default, rename = "user")]
    pub users: Vec<UserSection>,
    /// `[token]`: signed tokens (JWT) accepted as passwords.
    pub token: Option<Spanned<TokenSection>>,
    /// `[cache]`: the result cache.
    #[serde(default)]
    pub cache: CacheSection,
    /// `[admin]`: the HTTP interface for metrics, health and cache/acceleration control.
    pub admin: Option<AdminSection>,
}

/// `[cache]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Keep query results for reuse. Default: true.
    pub enabled: Option<bool>,
    /// Most bytes of results held (Arrow memory). Default: 268435456 (256 MiB).
    pub max_bytes: Option<Spanned<i64>>,
    /// Largest single result kept; larger ones stream through uncached.
    /// Default: a sixteenth of `max_bytes`.
    pub max_entry_bytes: Option<Spanned<i64>>,
    /// How long a result is reused, unless its dataset says otherwise (`cache_ttl`).
    /// Default: `5min`.
    pub ttl: Option<Spanned<String>>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address and port of the HTTP interface, e.g. `127.0.0.1:15433`.
    pub listen: Spanned<String>,
    /// Bearer token required on POST requests; `${VAR}` reads the environment.
    /// Default: none (bind to loopback then).
    pub token: Option<Spanned<String>>,
}

/// `[token]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// HS256 shared secret; `${VAR}` reads it from the environment.
    pub secret: Option<Spanned<String>>,
    /// JWKS file (relative to the config file) with the RS256 and ES256 public keys.
    pub jwks_file: Option<Spanned<String>>,
    /// The `iss` every token must carry.
    pub issuer: Option<Spanned<String>>,
    /// An `aud` every token must carry.
    pub audience: Option<Spanned<String>>,
    /// The claim that holds the login name. Default: `sub`.
    pub user_claim: Option<Spanned<String>>,
    /// Clock skew allowed when checking `exp` and `nbf`. Default: `30s`.
    pub leeway: Option<Spanned<String>>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address and port to listen on. Default: `127.0.0.1:15432`.
    pub listen: Option<Spanned<String>>,
    /// Most client connections served at once; more are refused with 53300. Default: 256.
    pub max_connections: Option<Spanned<i64>>,
    /// Default `statement_timeout` of every session (`0` = none, or `30s`, `5min`). Default: `0`.
    pub statement_timeout: Option<Spanned<String>>,
    /// Largest protocol message accepted from a client, in bytes. Default: 67108864 (64 MiB).
    pub max_message_bytes: Option<Spanned<i64>>,
    /// `stdout`, or a file (relative to the config file) that gets one JSON line per
    /// statement. Default: no audit log.
    pub audit_log: Option<Spanned<String>>,
    /// `[server.tls]`: TLS for client connections. Default: off.
    pub tls: Option<TlsSection>,
}

/// `[server.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, relative to the config file.
    pub cert: Spanned<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1), relative to the config file.
    pub key: Spanned<String>,
    /// Refuse clients that do not negotiate TLS (SQLSTATE 28000). Default: false.
    #[serde(default)]
    pub required: bool,
}

/// `[[source]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// Name datasets use to refer to this source.
    pub name: Spanned<String>,
    /// The connector: `lake` (a directory of Parquet tables), `postgres`, `mysql` or
    /// `sqlserver`.
    pub kind: Spanned<String>,
    /// For `lake`: the directory holding one subdirectory (or `.parquet` file) per table.
    pub path: Option<Spanned<String>>,
    /// For `lake`: generate the demo retail data here on first start.
    pub demo: Option<DemoSection>,
    /// For database sources: host name or address.
    pub host: Option<Spanned<String>>,
    /// For database sources: TCP port. Default: the engine's (5432, 3306, 1433).
    pub port: Option<Spanned<i64>>,
    /// For database sources: the database to connect to.
    pub database: Option<Spanned<String>>,
    /// For database sources: the schema whose tables datasets name. Default: `public`
    /// (postgres), the database (mysql), `dbo` (sqlserver).
    pub schema: Option<Spanned<String>>,
    /// For database sources: login user; `${VAR}` reads an environment variable.
    pub user: Option<Spanned<String>>,
    /// For database sources: password; `${VAR}` reads an environment variable.
    pub password: Option<Spanned<String>>,
    /// Connections kept at most. Default: 8.
    pub pool_size: Option<Spanned<i64>>,
    /// How long a query waits for a free connection before failing with 53300. Default: 5s.
    pub pool_timeout: Option<Spanned<String>>,
    /// How long opening a connection may take. Default: 5s.
    pub connect_timeout: Option<Spanned<String>>,
    /// Statement timeout set on every source connection; `0` = none. Default: 0.
    pub statement_timeout: Option<Spanned<String>>,
    /// How often a database that was down at start-up is tried again; its datasets come
    /// back when it answers. Default: 10s.
    pub retry_interval: Option<Spanned<String>>,
    /// `disable` (default) or `require`: TLS to the source, verifying its certificate.
    pub tls: Option<Spanned<String>>,
    /// PEM file of CA certificates trusted for the source's TLS certificate (besides the
    /// public web roots).
    pub ca_file: Option<Spanned<String>>,
}

/// `demo = { orders = 1000000, seed = 20240101 }` on a lake source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSection {
    /// Number of order rows, 1 to 100,000,000. Default: 1,000,000.
    pub orders: Option<Spanned<i64>>,
    /// Random seed; the same seed always gives the same data. Default: 20240101.
    pub seed: Option<u64>,
}

/// `[[workspace]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSection {
    /// The database name clients connect to.
    pub name: Spanned<String>,
    /// Shown by `\l+`.
    #[serde(default)]
    pub description: String,
    /// Users allowed to connect.
    #[serde(default)]
    pub members: Vec<Spanned<String>>,
    /// A member's role (`admin`, `developer`, `analyst` or `viewer`). Default: analyst.
    #[serde(default)]
    pub roles: BTreeMap<String, Spanned<String>>,
    /// The datasets a member may use, narrowing their role (a viewer sees only these).
    #[serde(default)]
    pub grants: BTreeMap<String, Spanned<Vec<String>>>,
    /// The role of users who log in with a valid token but are not in `members`.
    /// Default: such users are refused.
    pub token_role: Option<Spanned<String>>,
}

/// `[[dataset]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    /// Workspace that shows this dataset.
    pub workspace: Spanned<String>,
    /// Table name clients see.
    pub name: Spanned<String>,
    /// Source the dataset reads.
    pub source: Spanned<String>,
    /// Shown by `\d+` and in the `biproxy` schema.
    #[serde(default)]
    pub description: String,
    /// The dataset is this table of the source...
    pub table: Option<Spanned<String>>,
    /// ...or the result of this SQL query on the source.
    pub sql: Option<Spanned<String>>,
    /// `[[dataset.measure]]`: named aggregates, used as `MEASURE(name)`.
    #[serde(default, rename = "measure")]
    pub measures: Vec<MeasureSection>,
    /// `[[dataset.column]]`: labels and descriptions of the dataset's columns.
    #[serde(default, rename = "column")]
    pub columns: Vec<ColumnSection>,
    /// `[[dataset.field]]`: calculated fields, new columns computed by SQL expressions.
    #[serde(default, rename = "field")]
    pub fields: Vec<FieldSection>,
    /// `[[dataset.dimension]]`: typed dimensions (time with granularities, geo with a role).
    #[serde(default, rename = "dimension")]
    pub dimensions: Vec<DimensionSection>,
    /// `[[dataset.hierarchy]]`: ordered dimension lists such as region > province > city.
    #[serde(default, rename = "hierarchy")]
    pub hierarchies: Vec<HierarchySection>,
    /// `[[dataset.join]]`: many-to-one joins from the `table` to dimension tables.
    #[serde(default, rename = "join")]
    pub joins: Vec<JoinSection>,
    /// `[[dataset.policy]]`: row policies.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicySection>,
    /// How long results of queries on this dataset are reused (`0` = never).
    /// Default: `[cache] ttl`.
    pub cache_ttl: Option<Spanned<String>>,
    /// `[dataset.acceleration]`: keep a local columnar copy and answer from it.
    pub acceleration: Option<Spanned<AccelerationSection>>,
    /// `[[dataset.rollup]]`: pre-aggregations of the (accelerated) dataset.
    #[serde(default, rename = "rollup")]
    pub rollups: Vec<RollupSection>,
}

/// `[dataset.acceleration]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccelerationSection {
    /// How often the copy is rebuilt from the source (`0` = only on demand, through the
    /// admin interface). Default: `0`.
    pub refresh: Option<Spanned<String>>,
}

/// `[[dataset.rollup]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupSection {
    /// Name shown by `EXPLAIN`.
    pub name: Spanned<String>,
    /// Columns it groups by; a time granularity column (`order_date_day`) also answers
    /// coarser ones (`order_date_month`).
    pub dimensions: Vec<Spanned<String>>,
    /// Measures it holds (names of `[[dataset.measure]]`s).
    pub measures: Vec<Spanned<String>>,
}

/// `[[dataset.join]]`: a many-to-one join from the dataset's table to a dimension table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinSection {
    /// The dimension table.
    pub table: Spanned<String>,
    /// The source holding the dimension table. Default: the dataset's source. A join to
    /// another source runs in biproxy, each side's filters still pushed to its source.
    pub source: Option<Spanned<String>>,
    /// Key column of the table this one joins from.
    pub key: Spanned<String>,
    /// The table holding `key`: the dataset's table (default) or an earlier join's table,
    /// which makes a snowflake (products → categories).
    pub from: Option<Spanned<String>>,
    /// Key column of the dimension table. Default: the same name as `key`.
    pub dimension_key: Option<Spanned<String>>,
    /// `left` (default; pruned when none of its columns is used) or `inner`.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Dimension columns the dataset shows. Default: all but the key.
    pub columns: Option<Vec<Spanned<String>>>,
}

/// `[[dataset.dimension]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionSection {
    /// A column or calculated field of the dataset.
    pub name: Spanned<String>,
    /// `plain` (default), `time` or `geo`.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Time: the granularity columns to offer (`year`, `quarter`, `month`, `week`, `day`,
    /// `hour`), each as `<name>_<granularity>`. Default: all that fit the column's type.
    pub granularities: Option<Vec<Spanned<String>>>,
    /// Geo: `country`, `province`, `city`, `latitude` or `longitude`.
    pub geo_role: Option<Spanned<String>>,
    /// Shown to people and tools.
    #[serde(default)]
    pub description: String,
    /// Display name.
    #[serde(default)]
    pub label: String,
}

/// `[[dataset.hierarchy]]` (层次结构).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HierarchySection {
    /// Hierarchy name.
    pub name: Spanned<String>,
    /// Dimension names from the coarsest to the finest.
    pub levels: Vec<Spanned<String>>,
    /// Shown to people and tools.
    #[serde(default)]
    pub description: String,
    /// Display name.
    #[serde(default)]
    pub label: String,
}

/// `[[dataset.field]]`: a calculated field (计算字段).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSection {
    /// Column name of the field.
    pub name: Spanned<String>,
    /// SQL expression over the dataset's columns and other fields.
    pub expr: Spanned<String>,
    /// Shown to people and tools.
    #[serde(default)]
    pub description: String,
    /// Display name.
    #[serde(default)]
    pub label: String,
}

/// `[[dataset.measure]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSection {
    /// Name used in `MEASURE(name)`.
    pub name: Spanned<String>,
    /// `sum`, `count`, `count_distinct`, `avg`, `min` or `max`...
    pub agg: Option<Spanned<String>>,
    /// ...or an expression over other measures, e.g. `MEASURE(profit) / MEASURE(revenue)`.
    pub expr: Option<Spanned<String>>,
    /// The column aggregated; optional only for `count` (which then counts rows).
    pub column: Option<Spanned<String>>,
    /// Shown to people and tools.
    #[serde(default)]
    pub description: String,
    /// Display name.
    #[serde(default)]
    pub label: String,
}

/// `[[dataset.column]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSection {
    /// A column of the dataset.
    pub name: Spanned<String>,
    /// Shown to people and tools.
    #[serde(default)]
    pub description: String,
    /// Display name.
    #[serde(default)]
    pub label: String,
    /// Roles for which the column does not exist.
    #[serde(default)]
    pub hidden_from: Vec<Spanned<String>>,
    /// Roles that see `mask` instead of the value.
    #[serde(default)]
    pub masked_for: Vec<Spanned<String>>,
    /// A SQL expression over the dataset's columns shown in place of the value, e.g.
    /// `'***' || right(phone, 4)`.
    pub mask: Option<Spanned<String>>,
}

/// `[[user]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// Login name.
    pub name: Spanned<String>,
    /// SCRAM-SHA-256 verifier from `biproxy hash-password`; never a plain password.
    pub password: Spanned<String>,
    /// What row policies know of the user: `{ region = "East", regions = ["North"] }`.
    #[serde(default)]
    pub attributes: BTreeMap<String, Spanned<toml::Value>>,
}

/// `[[dataset.policy]]`: which rows of the dataset a user may see.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// A boolean SQL expression over the dataset's columns; `{{user.<attribute>}}` is the
    /// user's attribute as a literal (a list as `a, b, c` for `IN (...)`), `{{user.name}}`
    /// the login name. A missing attribute makes the policy deny every row.
    pub filter: Spanned<String>,
    /// Users it applies to. With `roles` also empty: everyone but admins.
    #[serde(default)]
    pub users: Vec<Spanned<String>>,
    /// Roles it applies to.
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    /// Must hold in addition to the permissive policies (of which one must hold).
    #[serde(default)]
    pub restrictive: bool,
    /// Why the policy exists.
    #[serde(default)]
    pub description: String,
}
