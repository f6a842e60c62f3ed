//! The semantic layer: datasets, the tables a workspace shows its clients.
//!
//! A dataset is defined in config as a table of a source or a SQL query on one. It is
//! planned once, at load, against the source's private context; clients see only the
//! result, as a base table of their workspace. Invariant: a dataset's plan is inlined
//! into every query that reads it, so the engine optimises the two together.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{TableType, ViewTable};
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::auth::Identity;
use crate::catalog::datasets::{DatasetSchema, Unavailable};
use crate::config::{
    ColumnDoc, Config, ConfigError, DatasetConfig, DatasetQuery, DimensionConfig, FieldConfig,
    HierarchyConfig, MeasureConfig, MeasureDef, Role, SourceKind, WorkspaceConfig,
};
use crate::policy::{DatasetAccess, Principal, SessionDatasets};
use crate::source::lake::{demo, LakeError};
use crate::source::{OpenError, Source};

pub mod dimension;
pub mod field;
pub mod measure;
pub mod metadata;
pub mod recovery;
pub mod star;

/// A dataset as clients see it.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Table name in the workspace.
    pub name: String,
    /// Description for tools.
    pub description: String,
    /// The provider registered in the workspace catalog.
    pub table: Arc<DatasetTable>,
    /// Named aggregates, used as `MEASURE(name)`.
    pub measures: Vec<MeasureConfig>,
    /// Column labels and descriptions.
    pub columns: Vec<ColumnDoc>,
    /// Calculated fields, including the granularity columns of time dimensions (all are
    /// columns of `table`).
    pub fields: Vec<FieldConfig>,
    /// Typed dimensions.
    pub dimensions: Vec<DimensionConfig>,
    /// Drill paths over dimensions.
    pub hierarchies: Vec<HierarchyConfig>,
    /// How long its query results are reused; `None` = the cache's default.
    pub cache_ttl: Option<std::time::Duration>,
}

impl Dataset {
    /// The comments tools show for this dataset and its columns: a column's own doc, else
    /// its calculated field's, else its dimension's description.
    pub fn doc(&self) -> crate::catalog::description::TableDoc {
        let columns = self
            .table
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let name = f.name();
                let described = |d: &String| (!d.is_empty()).then(|| d.clone());
                self.columns
                    .iter()
                    .find(|c| &c.name == name)
                    .and_then(|c| described(&c.description))
                    .or_else(|| {
                        self.fields
                            .iter()
                            .find(|c| &c.name == name)
                            .and_then(|c| described(&c.description))
                    })
                    .or_else(|| {
                        self.dimensions
                            .iter()
                            .find(|c| &c.name == name)
                            .and_then(|c| described(&c.description))
                    })
                    .unwrap_or_default()
            })
            .collect();
        crate::catalog::description::TableDoc {
            name: self.name.clone(),
            description: self.description.clone(),
            columns,
        }
    }
}

/// A workspace: its datasets and the template state sessions start from.
#[derive(Debug)]
pub struct Workspace {
    /// Database name.
    pub name: String,
    /// Human description.
    pub description: String,
    /// Datasets by name.
    pub datasets: Vec<Dataset>,
    /// Template DataFusion state: datasets + catalog + functions.
    pub state: SessionState,
    /// The datasets every session's `public` schema is a view of.
    pub public: Arc<DatasetSchema>,
    /// Members, with role, attributes and grants.
    pub members: HashMap<String, Principal>,
    /// The role of token users who are not members.
    pub token_role: Option<Role>,
    /// The raw tables of each source the workspace's datasets read, one schema per source
    /// named after it, for developers and admins.
    pub raw: Vec<(String, Arc<dyn datafusion::catalog::SchemaProvider>)>,
    /// Row policies and column rules by dataset name (including datasets whose source is
    /// down).
    pub access: Arc<HashMap<String, DatasetAccess>>,
    /// The server's result cache (shared by all workspaces; keys name the workspace).
    pub cache: Option<Arc<crate::cache::ResultCache>>,
}

impl Workspace {
    /// The raw-table schemas a member with `role` may query: all of them for developers
    /// and admins, none for anyone else.
    pub fn raw_schemas_for(
        &self,
        role: Role,
    ) -> &[(String, Arc<dyn datafusion::catalog::SchemaProvider>)] {
        match role {
            Role::Admin | Role::Developer => &self.raw,
            Role::Analyst | Role::Viewer => &[],
        }
    }

    /// The `public` schema a session of `identity` sees: the datasets they may use, under
    /// their row policies. A token's claims replace the configured attributes of the same
    /// name; a token user who is not a member has the workspace's `token_role`; anyone
    /// else who is not a member sees nothing.
    pub fn datasets_for(&self, identity: &Identity) -> Arc<SessionDatasets> {
        let user = identity.user.as_str();
        let stranger = |role: Option<Role>| Principal {
            user: user.to_owned(),
            role: role.unwrap_or(Role::Viewer),
            attributes: Default::default(),
            grants: role.is_none().then(Default::default),
        };
        let mut principal = match (self.members.get(user), &identity.claims) {
            (Some(member), _) => member.clone(),
            (None, Some(_)) => stranger(self.token_role),
            (None, None) => stranger(None),
        };
        if let Some(claims) = &identity.claims {
            principal.attributes.extend(claims.clone());
        }
        Arc::new(SessionDatasets::new(
            Arc::clone(&self.public),
            principal,
            Arc::clone(&self.access),
        ))
    }
}

/// The members of `ws` as policies see them.
fn members(config: &Config, ws: &WorkspaceConfig) -> HashMap<String, Principal> {
    ws.members
        .iter()
        .map(|m| {
            let attributes = config
                .users
                .iter()
                .find(|u| &u.name == m)
                .map(|u| u.attributes.clone())
                .unwrap_or_default();
            let principal = Principal {
                user: m.clone(),
                role: ws.role_of(m),
                attributes,
                grants: ws.grants.get(m).map(|g| g.iter().cloned().collect()),
            };
            (m.clone(), principal)
        })
        .collect()
}

/// Every workspace, built from one config.
#[derive(Debug, Default)]
pub struct Model {
    workspaces: HashMap<String, Arc<Workspace>>,
    recovery: Option<recovery::Recovery>,
    /// The result cache every workspace shares, when caching is on.
    pub cache: Option<Arc<crate::cache::ResultCache>>,
    /// The accelerated datasets (their first load starts with the server).
    pub accelerations: crate::accel::Accelerations,
}

impl Model {
    /// The workspace named `name`.
    pub fn workspace(&self, name: &str) -> Option<Arc<Workspace>> {
        self.workspaces.get(name).cloned()
    }

    /// The background work that brings back sources that were down at start-up, if any
    /// were (taken once, to be run by the server).
    pub fn take_recovery(&mut self) -> Option<recovery::Recovery> {
        self.recovery.take()
    }
}

/// The sources a dataset reads: its own and those of its joins.
fn sources_of(d: &DatasetConfig) -> impl Iterator<Item = &String> {
    std::iter::once(&d.source).chain(d.joins.iter().filter_map(|j| j.source.as_ref()))
}

/// The schemas of raw tables a developer of `ws` may query: one per source its datasets
/// read (sources down at start-up are left out until a restart).
fn raw_schemas(
    config: &Config,
    ws: &WorkspaceConfig,
    sources: &HashMap<String, Source>,
) -> Vec<(String, Arc<dyn datafusion::catalog::SchemaProvider>)> {
    let names: std::collections::BTreeSet<&String> = config
        .datasets
        .iter()
        .filter(|d| d.workspace == ws.name)
        .flat_map(sources_of)
        .collect();
    names
        .into_iter()
        .filter_map(|n| {
            let schema = sources
                .get(n)?
                .context()
                .catalog("source")?
                .schema("public")?;
            Some((n.clone(), schema))
        })
        .collect()
}

/// Why the model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A dataset definition is wrong; the errors name file and line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigError>),
    /// A source could not be opened.
    #[error("source \"{source_name}\": {cause}")]
    Source {
        /// Source name.
        source_name: String,
        /// What failed.
        cause: OpenError,
    },
    /// Building a catalog failed (a bug).
    #[error("cannot build the catalog of workspace \"{0}\": {1}")]
    Catalog(String, datafusion::error::DataFusionError),
}

/// Open the sources and plan every dataset. With `generate_demo`, demo data is generated
/// where configured and missing; without it (`biproxy check`), sources whose demo data is
/// not there yet are skipped, and so are their datasets.
///
/// # Errors
/// All dataset errors at once, with file and line; or the first source that fails to open.
pub async fn build(config: &Config, generate_demo: bool) -> Result<Model, ModelError> {
    let (sources, down) = open_sources(config, generate_demo).await?;
    let mut errors = Vec::new();
    let mut workspaces = HashMap::new();
    let mut pending = Vec::new();
    let mut schemas = HashMap::new();
    let cache = crate::cache::ResultCache::new(&config.cache);
    let mut accelerations = crate::accel::Accelerations::default();
    for ws in &config.workspaces {
        let mut datasets = Vec::new();
        let mut unavailable = Vec::new();
        for d in config.datasets.iter().filter(|d| d.workspace == ws.name) {
            if let Some((source, reason)) =
                sources_of(d).filter_map(|s| down.get_key_value(s)).next()
            {
                unavailable.push(Unavailable {
                    dataset: d.name.to_lowercase(),
                    source: source.clone(),
                    reason: reason.clone(),
                });
                pending.push((ws.name.clone(), d.clone()));
                continue;
            }
            if !sources.contains_key(&d.source) {
                continue;
            }
            match dataset(d, &sources).await {
                Ok(dataset) => datasets.push(dataset),
                Err(found) => errors.extend(found),
            }
        }
        let public = Arc::new(DatasetSchema::new(&unavailable));
        schemas.insert(ws.name.clone(), Arc::clone(&public));
        let mut workspace = workspace(&ws.name, &ws.description, datasets, public).await?;
        workspace.members = members(config, ws);
        workspace.token_role = ws.token_role;
        workspace.cache.clone_from(&cache);
        match crate::accel::for_workspace(config, &workspace) {
            Ok(found) => accelerations.all.extend(found),
            Err(found) => errors.extend(found),
        }
        workspace.raw = raw_schemas(config, ws, &sources);
        workspace.access = Arc::new(
            config
                .datasets
                .iter()
                .filter(|d| d.workspace == ws.name)
                .map(|d| {
                    let access = DatasetAccess {
                        policies: d.policies.clone(),
                        columns: d
                            .columns
                            .iter()
                            .filter(|c| !c.hidden_from.is_empty() || !c.masked_for.is_empty())
                            .cloned()
                            .collect(),
                    };
                    (d.name.to_lowercase(), access)
                })
                .filter(|(_, a)| !a.policies.is_empty() || !a.columns.is_empty())
                .collect(),
        );
        workspaces.insert(ws.name.clone(), Arc::new(workspace));
    }
    if !errors.is_empty() {
        return Err(ModelError::Config(errors));
    }
    let recovery = (!down.is_empty()).then(|| recovery::Recovery {
        sources,
        down: config
            .sources
            .iter()
            .filter(|s| down.contains_key(&s.name))
            .cloned()
            .collect(),
        pending,
        schemas,
    });
    Ok(Model {
        workspaces,
        recovery,
        cache,
        accelerations,
    })
}

/// Open every source, generating demo data first where configured (and allowed). A
/// database that cannot be reached is logged and left out, with its datasets: one source
/// being down must not keep the others from being served.
async fn open_sources(
    config: &Config,
    generate_demo: bool,
) -> Result<(HashMap<String, Source>, HashMap<String, String>), ModelError> {
    let mut sources = HashMap::new();
    let mut down = HashMap::new();
    for source in &config.sources {
        if let SourceKind::Lake { path, demo: spec } = &source.kind {
            if spec.is_some() && !generate_demo && !path.exists() {
                tracing::info!(source = %source.name, "demo data not generated yet; its datasets are not checked");
                continue;
            }
            if let Some(spec) = spec.as_ref().filter(|_| generate_demo) {
                ensure_demo(path, spec)
                    .await
                    .map_err(|cause| ModelError::Source {
                        source_name: source.name.clone(),
                        cause: cause.into(),
                    })?;
            }
        }
        match Source::open(source).await {
            Ok(opened) => {
                sources.insert(source.name.clone(), opened);
            }
            Err(OpenError::Sql(e)) => {
                tracing::error!(source = %source.name, error = %e, "source unavailable; its datasets answer 08001 until it answers again");
                down.insert(source.name.clone(), e.to_string());
            }
            Err(OpenError::Unsupported(name, reason)) => {
                tracing::error!(source = %name, "{reason}");
                down.insert(name, reason);
            }
            Err(cause) => {
                return Err(ModelError::Source {
                    source_name: source.name.clone(),
                    cause,
                })
            }
        }
    }
    Ok((sources, down))
}

/// Generate the demo data off the async threads (it is CPU and disk work).
async fn ensure_demo(path: &std::path::Path, spec: &demo::DemoSpec) -> Result<(), LakeError> {
    let (path, spec) = (path.to_path_buf(), spec.clone());
    let generated = tokio::task::spawn_blocking(move || demo::ensure(&path, &spec))
        .await
        .map_err(|e| demo::DemoError::Io {
            path: std::path::PathBuf::from("(generator task)"),
            source: std::io::Error::other(e),
        })?;
    generated.map(|_| ()).map_err(LakeError::Demo)
}

/// Plan a dataset and check its model against the planned columns.
async fn dataset(
    d: &DatasetConfig,
    sources: &HashMap<String, Source>,
) -> Result<Dataset, Vec<ConfigError>> {
    let (table, generated) = plan_dataset(d, sources).await.map_err(|e| vec![e])?;
    let schema = table.schema();
    let mut found = check_columns(d, &schema);
    found.extend(measure::check(d));
    found.extend(dimension::check(d, &schema));
    found.extend(d.columns.iter().filter_map(|c| {
        let mask = c.mask.as_ref()?;
        crate::policy::check_mask(mask, &c.name, &schema)
            .err()
            .map(|m| {
                ConfigError::at(
                    &c.origin,
                    format!("dataset \"{}\".column \"{}\".mask", d.name, c.name),
                    m,
                )
            })
    }));
    found.extend(d.policies.iter().filter_map(|p| {
        crate::policy::check(p, &schema)
            .err()
            .map(|m| ConfigError::at(&p.origin, format!("dataset \"{}\".policy", d.name), m))
    }));
    if !found.is_empty() {
        return Err(found);
    }
    Ok(Dataset {
        name: d.name.to_lowercase(),
        description: d.description.clone(),
        table: Arc::new(table),
        measures: d.measures.clone(),
        columns: d.columns.clone(),
        fields: d.fields.iter().cloned().chain(generated).collect(),
        dimensions: d.dimensions.clone(),
        hierarchies: d.hierarchies.clone(),
        cache_ttl: d.cache_ttl,
    })
}

/// A workspace's template state: its datasets, the model schema, the catalog, comments.
async fn workspace(
    name: &str,
    description: &str,
    datasets: Vec<Dataset>,
    public: Arc<DatasetSchema>,
) -> Result<Workspace, ModelError> {
    let fail = |e| ModelError::Catalog(name.to_owned(), e);
    let providers: Vec<(String, Arc<dyn TableProvider>)> = datasets
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                Arc::clone(&d.table) as Arc<dyn TableProvider>,
            )
        })
        .collect();
    let state = metadata::schema(&datasets)
        .and_then(|meta| {
            crate::catalog::workspace_state(name, &providers, Arc::clone(&public), meta)
        })
        .map_err(fail)?;
    let docs: Vec<_> = datasets.iter().map(Dataset::doc).collect();
    let state = crate::catalog::description::install(state, name, &docs)
        .await
        .map_err(fail)?;
    Ok(Workspace {
        name: name.to_owned(),
        description: description.to_owned(),
        datasets,
        state,
        public: Arc::clone(&public),
        members: HashMap::new(),
        token_role: None,
        raw: Vec::new(),
        access: Arc::default(),
        cache: None,
    })
}

/// Plan one dataset against its source.
async fn plan_dataset(
    d: &DatasetConfig,
    sources: &HashMap<String, Source>,
) -> Result<(DatasetTable, Vec<FieldConfig>), ConfigError> {
    let lake = &sources[&d.source];
    let (field, sql) = match &d.query {
        DatasetQuery::Table(t) => {
            if !lake.tables().iter().any(|x| x == &t.to_lowercase()) {
                return Err(ConfigError::at(
                    &d.origin,
                    format!("dataset \"{}\".table", d.name),
                    format!(
                        "source \"{}\" has no table \"{t}\"; it has: {}",
                        d.source,
                        lake.tables().join(", ")
                    ),
                ));
            }
            let from = if d.joins.is_empty() {
                t.to_lowercase()
            } else {
                star::register(d, &t.to_lowercase(), sources).await?
            };
            ("table", format!("SELECT * FROM {}", quote_ident(&from)))
        }
        DatasetQuery::Sql(s) => ("sql", s.clone()),
    };
    let err = |m: String| ConfigError::at(&d.origin, format!("dataset \"{}\".{field}", d.name), m);
    let statements =
        Parser::parse_sql(&PostgreSqlDialect {}, &sql).map_err(|e| err(e.to_string()))?;
    if statements.len() != 1 {
        return Err(err("must be exactly one SELECT statement".into()));
    }
    let mut sql = sql;
    let mut plan = plan_sql(lake, &sql).await.map_err(err)?;
    for f in field::order(&d.fields, &d.name)? {
        sql = field::wrap(&sql, f);
        plan = plan_sql(lake, &sql)
            .await
            .map_err(|m| field::error(&d.name, f, m))?;
    }
    let generated = dimension::granularity_fields(d, plan.schema().as_arrow())?;
    for f in &generated {
        sql = field::wrap(&sql, f);
        plan = plan_sql(lake, &sql)
            .await
            .map_err(|m| field::error(&d.name, f, m))?;
    }
    Ok((
        DatasetTable {
            view: ViewTable::new(plan, Some(sql)),
        },
        generated,
    ))
}

/// Plan read-only SQL against a source's tables; the error text is the user-facing one.
async fn plan_sql(lake: &Source, sql: &str) -> Result<LogicalPlan, String> {
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    lake.context()
        .sql_with_options(sql, options)
        .await
        .map(datafusion::dataframe::DataFrame::into_unoptimized_plan)
        .map_err(|e| crate::Error::from_datafusion(&e).to_string())
}

/// Every measure column and documented column must exist in the dataset.
fn check_columns(d: &DatasetConfig, schema: &SchemaRef) -> Vec<ConfigError> {
    let has = |c: &str| schema.fields().iter().any(|f| f.name() == c);
    let known = || {
        schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let measures = d.measures.iter().filter_map(|m| {
        let MeasureDef::Aggregate {
            column: Some(column),
            ..
        } = &m.definition
        else {
            return None;
        };
        let column = Some(column.as_str()).filter(|c| !has(c))?;
        Some(ConfigError::at(
            &m.origin,
            format!("dataset \"{}\".measure \"{}\".column", d.name, m.name),
            format!(
                "dataset \"{}\" has no column \"{column}\"; it has: {}",
                d.name,
                known()
            ),
        ))
    });
    let columns = d.columns.iter().filter(|c| !has(&c.name)).map(|c| {
        ConfigError::at(
            &c.origin,
            format!("dataset \"{}\".column.name", d.name),
            format!(
                "dataset \"{}\" has no column \"{}\"; it has: {}",
                d.name,
                c.name,
                known()
            ),
        )
    });
    measures.chain(columns).collect()
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The table provider of a dataset: a view over its source that reports itself as a
/// base table, because that is what a dataset is to a BI tool (psql `\dt`, JDBC
/// `getTables("TABLE")`).
#[derive(Debug)]
pub struct DatasetTable {
    view: ViewTable,
}

impl DatasetTable {
    /// A dataset-like table over `plan` (a dataset under a row policy, say).
    pub fn from_plan(plan: LogicalPlan) -> DatasetTable {
        DatasetTable {
            view: ViewTable::new(plan, None),
        }
    }

    /// The plan of the dataset's definition, as inlined into queries.
    pub fn plan(&self) -> &LogicalPlan {
        self.view.logical_plan()
    }
}

#[async_trait]
impl TableProvider for DatasetTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        self.view.get_logical_plan()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.view.get_table_definition()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.view.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.view.scan(state, projection, filters, limit).await
    }
}
