//! One client connection's state: who it is, its settings, its DataFusion context, and
//! the query it is running.
//!
//! Owns executing a [`Prepared`] statement: session commands are answered here without
//! the engine; queries run in the session's context and stream back as Arrow batches,
//! stopped by a cancel request or `statement_timeout` at any point of the stream, not only
//! while planning. Does not own the wire encoding (that is `wire`).

pub mod settings;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;
use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::Identity;
use crate::error::Error;
use crate::plan::{Command, Prepared, TransactionCommand};
use crate::semantic::Workspace;
use settings::Settings;

/// A stream of result batches that ends with an error when cancelled or timed out.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, Error>> + Send>>;

/// What executing a statement produced.
pub enum Outcome {
    /// Rows, described by `schema` and named `columns` on the wire.
    Rows {
        /// Arrow schema of every batch.
        schema: SchemaRef,
        /// Column names as PostgreSQL would report them.
        columns: Vec<String>,
        /// The batches.
        batches: BatchStream,
    },
    /// A command without rows; the command tag.
    Done(String),
    /// A transaction-control command (changes the transaction status reported to the client).
    Transaction(TransactionCommand),
}

/// A connected, authenticated session.
pub struct Session {
    /// Who is connected, to which workspace.
    pub identity: Identity,
    workspace: Arc<Workspace>,
    planner: tokio::sync::Mutex<Planner>,
    /// What every query of the session executes with (its functions and configuration),
    /// built once rather than copied out of the planning state per query.
    task: Arc<TaskContext>,
    settings: Arc<Mutex<Settings>>,
    current: Mutex<CancellationToken>,
    /// Who the session's plans are for, as the result cache's memo keys them.
    principal: String,
    last_cache_hit: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Start a session of `identity` on `workspace`, with the startup parameters the client sent.
    pub fn new<'a>(
        identity: Identity,
        workspace: Arc<Workspace>,
        default_timeout: Option<Duration>,
        startup: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Session {
        let settings = Arc::new(Mutex::new(Settings::new(default_timeout, startup)));
        let datasets = workspace.datasets_for(&identity);
        let principal = datasets.principal().fingerprint();
        let raw = workspace.raw_schemas_for(datasets.principal().role);
        let public: Arc<dyn datafusion::catalog::SchemaProvider> = datasets;
        let ctx = crate::catalog::session_context(
            &workspace.state,
            &identity.user,
            Arc::clone(&settings),
            &public,
            raw,
        );
        let state = ctx.state();
        Session {
            identity,
            workspace,
            task: state.task_ctx(),
            planner: tokio::sync::Mutex::new(Planner {
                state,
                without_rollups: None,
            }),
            settings,
            current: Mutex::new(CancellationToken::new()),
            principal,
            last_cache_hit: AtomicBool::new(false),
        }
    }

    /// Whether the last query was answered from the result cache (for the audit log).
    pub fn last_cache_hit(&self) -> bool {
        self.last_cache_hit.load(Ordering::Relaxed)
    }

    /// The result cache, unless it is off or the session said `SET biproxy.cache = off`.
    fn cache(&self) -> Option<&Arc<crate::cache::ResultCache>> {
        let off = self.switched_off("biproxy.cache");
        self.workspace.cache.as_ref().filter(|_| !off)
    }

    /// The cached answer to a statement without parameters that this session's principal
    /// ran before, found without planning it (the simple protocol's fast path).
    pub async fn cached(&self, sql: &str) -> Option<(Outcome, Vec<String>)> {
        let cache = self.cache()?;
        let key = cache.session_key(
            &self.workspace.name,
            &self.principal,
            sql,
            &ParamValues::List(Vec::new()),
        );
        let hit = cache.lookup(&key).await?;
        self.last_cache_hit.store(true, Ordering::Relaxed);
        let datasets = hit.datasets().to_vec();
        let outcome = Outcome::Rows {
            schema: Arc::clone(&hit.result.schema),
            batches: hit.result.stream(),
            columns: hit.columns,
        };
        Some((outcome, datasets))
    }

    /// Whether the session set `name` to `off` (or `false`, `0`).
    fn switched_off(&self, name: &str) -> bool {
        self.settings()
            .get(name)
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "off" | "false" | "0"))
    }

    /// Classify and, for a query, plan one statement in this session (see
    /// [`crate::plan::prepare`]).
    ///
    /// # Errors
    /// The classification or planning error, with its SQLSTATE.
    pub async fn prepare(&self, stmt: Statement) -> Result<Prepared, Error> {
        let rollups = self.rollups();
        // Read before planning: a swap while planning makes the next execution plan again.
        let version = self.workspace.public.version();
        let mut planner = self.planner.lock().await;
        crate::plan::prepare(
            planner.state(rollups),
            &self.workspace.datasets,
            stmt,
            version,
        )
        .await
    }

    /// `prepared` planned again, when a dataset it reads has been answered by another
    /// table since it was planned (an accelerated copy became ready or was refreshed, a
    /// source came back): a client that keeps a statement prepared all day reads
    /// today's copy, and the old copy's memory is not held for it.
    async fn replanned(&self, prepared: &Prepared) -> Result<Option<Arc<Prepared>>, Error> {
        let version = self.workspace.public.version();
        if prepared.data_version == version {
            return Ok(None);
        }
        let Some(statement) = prepared.statement.clone() else {
            return Ok(None);
        };
        let lock = || prepared.replanned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = lock().as_ref().filter(|p| p.data_version == version) {
            return Ok(Some(Arc::clone(done)));
        }
        let fresh = Arc::new(self.prepare(statement).await?);
        *lock() = Some(Arc::clone(&fresh));
        Ok(Some(fresh))
    }

    /// The datasets of the session's workspace.
    pub fn datasets(&self) -> &[crate::semantic::Dataset] {
        &self.workspace.datasets
    }

    /// Lock the settings; never held across an await.
    pub fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cancel the running query, if any (a CancelRequest arrived).
    pub fn cancel(&self) {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cancel();
    }

    /// Run a prepared statement with bound parameters.
    ///
    /// # Errors
    /// The statement's error with its SQLSTATE; 57014 when cancelled or timed out before
    /// the first batch.
    pub async fn execute(
        &self,
        prepared: &Prepared,
        params: ParamValues,
    ) -> Result<Outcome, Error> {
        match &prepared.command {
            Command::Query(_) | Command::CopyOut { .. } => match self.replanned(prepared).await? {
                Some(fresh) => self.run_query(&fresh, params).await,
                None => self.run_query(prepared, params).await,
            },
            Command::Set { name, value } => {
                self.settings().set(name, value)?;
                Ok(Outcome::Done("SET".into()))
            }
            Command::Reset(name) => {
                match name {
                    Some(n) => self.settings().reset(n)?,
                    None => self.settings().reset_all(),
                }
                Ok(Outcome::Done("RESET".into()))
            }
            Command::Show(name) => self.show(name.as_deref(), &prepared.columns),
            Command::Transaction(t) => Ok(Outcome::Transaction(*t)),
            Command::Discard => {
                self.settings().reset_all();
                Ok(Outcome::Done("DISCARD ALL".into()))
            }
            Command::Deallocate(_) => Ok(Outcome::Done("DEALLOCATE".into())),
            Command::Write(tag) => Err(Error::ReadOnly(tag.clone())),
        }
    }

    fn show(&self, name: Option<&str>, columns: &[String]) -> Result<Outcome, Error> {
        let rows: Vec<Vec<String>> = match name {
            Some(n) => vec![vec![self.settings().get(n)?]],
            None => self
                .settings()
                .all()
                .into_iter()
                .map(|(n, v, d)| vec![n, v, d])
                .collect(),
        };
        let batch = crate::catalog::text_batch(columns, &rows)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Outcome::Rows {
            schema: batch.schema(),
            columns: columns.to_vec(),
            batches: Box::pin(futures::stream::once(async { Ok(batch) })),
        })
    }

    async fn run_query(&self, prepared: &Prepared, params: ParamValues) -> Result<Outcome, Error> {
        self.last_cache_hit.store(false, Ordering::Relaxed);
        let plan = prepared
            .plan
            .clone()
            .ok_or_else(|| Error::Internal("query without a plan".into()))?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let rows = |batches| Outcome::Rows {
            schema: Arc::clone(&schema),
            columns: prepared.columns.clone(),
            batches,
        };
        let cache = self.cache();
        let datasets = match cache {
            Some(_) => self.dataset_ttls(&plan),
            None => Vec::new(),
        };
        let memo = cache.filter(|_| !datasets.is_empty()).map(|c| {
            c.session_key(
                &self.workspace.name,
                &self.principal,
                &prepared.sql,
                &params,
            )
        });
        if let (Some(c), Some(key)) = (cache, &memo) {
            if let Some(hit) = c.lookup(key).await {
                self.last_cache_hit.store(true, Ordering::Relaxed);
                return Ok(rows(hit.result.stream()));
            }
        }
        let token = self.start_query();
        let deadline = self
            .settings()
            .statement_timeout()
            .map(|t| Instant::now() + t);
        let rollups = self.rollups();
        let start = async {
            let mut planner = self.planner.lock().await;
            let state: &SessionState = planner.state(rollups);
            let optimized = optimize(prepared, &plan, params, rollups, state)?;
            let entry =
                cache.and_then(|c| c.cacheable(&self.workspace.name, &datasets, &optimized));
            let physical = state
                .query_planner()
                .create_physical_plan(&optimized, state)
                .await?;
            Ok::<_, Error>((physical, entry))
        };
        let (physical, entry) = guard(start, &token, deadline).await?;
        let run = || async {
            let stream = datafusion::physical_plan::execute_stream(
                Arc::clone(&physical),
                Arc::clone(&self.task),
            )?;
            Ok(guarded_stream(stream, token.clone(), deadline))
        };
        let batches = match (cache, entry) {
            (Some(c), Some(entry)) => {
                let memo = memo.map(|k| (k, prepared.columns.as_slice()));
                let (got, hit) = guard(
                    c.get_or_run(&entry, memo, Arc::clone(&schema), run),
                    &token,
                    deadline,
                )
                .await?;
                self.last_cache_hit.store(hit, Ordering::Relaxed);
                got
            }
            _ => run().await?,
        };
        Ok(rows(batches))
    }

    /// Whether the rollup rule plans this session's queries: off after
    /// `SET biproxy.rollups = off` (to compare a rollup's answer with the copy's).
    fn rollups(&self) -> bool {
        !self.switched_off("biproxy.rollups")
    }

    /// The datasets `plan` reads, with their result-cache TTLs.
    fn dataset_ttls(
        &self,
        plan: &datafusion::logical_expr::LogicalPlan,
    ) -> Vec<(String, Option<Duration>)> {
        crate::audit::datasets_in(plan, &self.workspace.datasets)
            .into_iter()
            .map(|name| {
                let ttl = self
                    .workspace
                    .datasets
                    .iter()
                    .find(|d| d.name == name)
                    .and_then(|d| d.cache_ttl);
                (name, ttl)
            })
            .collect()
    }

    fn start_query(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = token.clone();
        token
    }
}

/// Where a session's statements are planned: its DataFusion state, reused from one
/// statement to the next (a copy per statement would copy every function registry),
/// behind a lock a session holds while it plans one statement.
struct Planner {
    state: SessionState,
    /// The state without the rollup rule, made on the first `SET biproxy.rollups = off`.
    without_rollups: Option<SessionState>,
}

impl Planner {
    /// The state to plan the next statement in, with a fresh clock (what `now()` folds
    /// to) and fresh generated names, as DataFusion gives every statement.
    fn state(&mut self, rollups: bool) -> &mut SessionState {
        let state = if rollups {
            &mut self.state
        } else {
            let base = &self.state;
            self.without_rollups.get_or_insert_with(|| {
                let rules = base
                    .optimizers()
                    .iter()
                    .filter(|r| r.name() != "use_rollups")
                    .cloned()
                    .collect();
                datafusion::execution::SessionStateBuilder::new_from_existing(base.clone())
                    .with_optimizer_rules(rules)
                    .build()
            })
        };
        state.mark_start_execution();
        state
    }
}

/// The optimized plan of `prepared` with `params` bound. A statement whose plan reads no
/// clock, setting or random value is optimized once, with its parameters as placeholders,
/// and every execution binds that plan; any other is bound, then optimized, each time.
fn optimize(
    prepared: &Prepared,
    plan: &LogicalPlan,
    params: ParamValues,
    rollups: bool,
    state: &SessionState,
) -> Result<LogicalPlan, Error> {
    let generic = prepared.generic.get_or_init(|| {
        let plan = prepared.reusable().then(|| state.optimize(plan).ok())??;
        Some(crate::plan::Generic { plan, rollups })
    });
    if let Some(g) = generic.as_ref().filter(|g| g.rollups == rollups) {
        if let Ok(bound) = bind_typed(g.plan.clone(), &params) {
            return Ok(bound);
        }
    }
    let plan = if prepared.param_types.is_empty() {
        plan.clone()
    } else {
        plan.clone().with_param_values(params)?
    };
    Ok(state.optimize(&plan)?)
}

/// Put `params` in an optimized plan's placeholders, each value cast to the type its
/// placeholder was optimized for (the type coercion that ran around it), so that no
/// node's schema changes and none has to be rebuilt.
///
/// # Errors
/// A missing value, an untyped placeholder, or a value that does not cast.
fn bind_typed(plan: LogicalPlan, params: &ParamValues) -> datafusion::error::Result<LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::expr::Placeholder;
    use datafusion::logical_expr::expr_rewriter::NamePreserver;
    use datafusion::logical_expr::Expr;
    let value = |p: &Placeholder| {
        let field = p.field.as_ref().ok_or_else(|| {
            datafusion::error::DataFusionError::Plan(format!("{} has no type", p.id))
        })?;
        let (value, metadata) = params.get_placeholders_with_values(&p.id)?.into_inner();
        Ok::<_, datafusion::error::DataFusionError>(Expr::Literal(
            value.cast_to(field.data_type())?,
            metadata,
        ))
    };
    plan.transform_up_with_subqueries(|node| {
        let names = NamePreserver::new(&node);
        node.map_expressions(|e| {
            if !e.exists(|x| Ok(matches!(x, Expr::Placeholder(_))))? {
                return Ok(Transformed::no(e));
            }
            let name = names.save(&e);
            let bound = e.transform_up(|x| match x {
                Expr::Placeholder(p) => Ok(Transformed::yes(value(&p)?)),
                other => Ok(Transformed::no(other)),
            })?;
            Ok(bound.update_data(|x| name.restore(x)))
        })
    })
    .map(|t| t.data)
}

/// Await `fut` unless the query is cancelled or its deadline passes first.
async fn guard<T>(
    fut: impl std::future::Future<Output = Result<T, Error>>,
    token: &CancellationToken,
    deadline: Option<Instant>,
) -> Result<T, Error> {
    let timeout = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = fut => r,
        () = token.cancelled() => Err(Error::Canceled),
        () = timeout => Err(Error::Timeout),
    }
}

/// Wrap the engine's stream so that every wait for the next batch races the cancel token
/// and the deadline. Ending the stream drops the engine's stream, which stops the work.
fn guarded_stream(
    stream: SendableRecordBatchStream,
    token: CancellationToken,
    deadline: Option<Instant>,
) -> BatchStream {
    let state = Some((stream, token));
    Box::pin(futures::stream::unfold(state, move |state| async move {
        let (mut stream, token) = state?;
        let next = guard(
            async { stream.next().await.transpose().map_err(Error::from) },
            &token,
            deadline,
        )
        .await;
        match next {
            Ok(Some(batch)) => Some((Ok(batch), Some((stream, token)))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    }))
}
