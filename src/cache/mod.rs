//! The result cache: query results kept in memory and served again, never to someone who
//! would have received other rows.
//!
//! An entry is keyed by what actually runs: the workspace, the data versions of the
//! datasets read, and the *optimized* logical plan — which holds each session's row
//! policies and column masks as literals, and from which the statement sent to each
//! source is generated — plus the identity of every table it scans. Two users share an
//! entry only when their plans are the same plan, that is when they would receive the
//! same rows. Plans that read the catalog, call a function that is not immutable
//! (`random()`, `current_setting()`), or still hold placeholders are never cached.
//!
//! A second, cheaper map remembers, per principal (user, role, attributes, grants),
//! statement text and parameters, which entry that statement led to last time, so a
//! repeated dashboard query is answered before it is planned at all. It is a memo of
//! the first map, not a second source of truth: its keys include the principal and a
//! generation that every flush and refresh bumps.
//!
//! Entries are bounded in bytes (Arrow memory, by moka's weigher), expire after the
//! shortest `cache_ttl` of the datasets read, and concurrent identical misses collapse
//! into one execution (moka's `try_get_with`). Results larger than
//! `max_entry_bytes` stream through uncached.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::ParamValues;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan};
use futures::StreamExt;
use moka::future::Cache;

use crate::config::CacheConfig;
use crate::error::{Error, SqlState};
use crate::session::BatchStream;

/// A cached result: every batch of one query's answer.
#[derive(Debug)]
pub struct CachedResult {
    /// Schema of the batches.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    bytes: usize,
    ttl: Duration,
    workspace: String,
    datasets: Vec<String>,
}

impl CachedResult {
    /// The rows as a fresh stream.
    pub fn stream(self: &Arc<Self>) -> BatchStream {
        let batches = self.batches.clone();
        Box::pin(futures::stream::iter(batches.into_iter().map(Ok)))
    }
}

/// What a cacheable query is: its key and how long its result may be reused.
#[derive(Debug, Clone)]
pub struct Cacheable {
    key: Arc<str>,
    ttl: Duration,
    workspace: String,
    datasets: Vec<String>,
}

/// What the memo remembers of a statement: its entry, and the column names clients saw.
#[derive(Debug)]
struct Memo {
    key: Arc<str>,
    columns: Vec<String>,
}

/// A hit found before planning: the rows, the column names and the datasets read.
#[derive(Debug)]
pub struct MemoHit {
    /// The result.
    pub result: Arc<CachedResult>,
    /// Column names as the statement named them.
    pub columns: Vec<String>,
}

impl MemoHit {
    /// The datasets the result was read from (for the audit log).
    pub fn datasets(&self) -> &[String] {
        &self.result.datasets
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Answers served from the cache (either map).
    pub hits: AtomicU64,
    /// Cacheable queries that had to run.
    pub misses: AtomicU64,
    /// Queries that waited for an identical query already running instead of running.
    pub collapsed: AtomicU64,
    /// Queries that could not be cached (catalog, volatile functions, zero TTL).
    pub uncacheable: AtomicU64,
    /// Results too large to keep.
    pub too_large: AtomicU64,
}

/// Why a fill of the cache did not produce an entry, as those who waited for it see it.
#[derive(Debug, thiserror::Error)]
enum FillError {
    /// The query failed: whoever waited for it gets the same error.
    #[error("{1}")]
    Query(SqlState, String),
    /// The one who ran it cancelled it or ran out of time: the others run their own.
    #[error("cancelled by the session that ran it")]
    Abandoned,
    /// The result was larger than `max_entry_bytes`: the others run their own, uncached.
    #[error("result too large to cache")]
    TooLarge,
}

/// The server's result cache; see the module documentation.
#[derive(Debug)]
pub struct ResultCache {
    config: CacheConfig,
    entries: Cache<Arc<str>, Arc<CachedResult>>,
    memo: Cache<Arc<str>, Arc<Memo>>,
    versions: Mutex<HashMap<(String, String), u64>>,
    generation: AtomicU64,
    /// Hit, miss and bypass counts.
    pub stats: CacheStats,
}

struct ByTtl;

impl moka::Expiry<Arc<str>, Arc<CachedResult>> for ByTtl {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &Arc<CachedResult>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl ResultCache {
    /// A cache as configured; `None` when caching is off.
    pub fn new(config: &CacheConfig) -> Option<Arc<ResultCache>> {
        if !config.enabled {
            return None;
        }
        let entries = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|k: &Arc<str>, v: &Arc<CachedResult>| {
                u32::try_from(k.len() + v.bytes).unwrap_or(u32::MAX)
            })
            .expire_after(ByTtl)
            .support_invalidation_closures()
            .build();
        let memo = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(config.ttl.max(Duration::from_secs(1)))
            .build();
        Some(Arc::new(ResultCache {
            config: config.clone(),
            entries,
            memo,
            versions: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            stats: CacheStats::default(),
        }))
    }

    /// The default time results are reused.
    pub fn default_ttl(&self) -> Duration {
        self.config.ttl
    }

    /// Bytes held now (approximate until moka's pending work runs).
    pub fn bytes(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Entries held now (approximate).
    pub fn entries(&self) -> u64 {
        self.entries.entry_count()
    }

    /// The memo key of a statement as `principal` runs it: see the module documentation.
    pub fn session_key(
        &self,
        workspace: &str,
        principal: &str,
        sql: &str,
        params: &ParamValues,
    ) -> Arc<str> {
        let generation = self.generation.load(Ordering::Acquire);
        Arc::from(format!(
            "{generation}\u{0}{workspace}\u{0}{principal}\u{0}{sql}\u{0}{params:?}"
        ))
    }

    /// The result a statement led to before, if it is still held.
    pub async fn lookup(&self, session_key: &Arc<str>) -> Option<MemoHit> {
        let memo = self.memo.get(session_key).await?;
        let result = self.entries.get(&memo.key).await?;
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(MemoHit {
            result,
            columns: memo.columns.clone(),
        })
    }

    /// Whether and how an optimized plan can be cached. `datasets` are the datasets it
    /// reads with their TTLs (`None`: the default).
    pub fn cacheable(
        &self,
        workspace: &str,
        datasets: &[(String, Option<Duration>)],
        plan: &LogicalPlan,
    ) -> Option<Cacheable> {
        let ttl = datasets
            .iter()
            .map(|(_, t)| t.unwrap_or(self.config.ttl))
            .min()
            .filter(|t| !t.is_zero());
        let key = ttl.and_then(|_| (!datasets.is_empty()).then(|| plan_key(plan)).flatten());
        let (Some(ttl), Some(plan_key)) = (ttl, key) else {
            self.stats.uncacheable.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let mut key = String::with_capacity(plan_key.len() + 64);
        let _ = write!(key, "{workspace}");
        {
            let versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
            for (d, _) in datasets {
                let v = versions
                    .get(&(workspace.to_owned(), d.clone()))
                    .copied()
                    .unwrap_or(0);
                let _ = write!(key, "\u{0}{d}@{v}");
            }
        }
        key.push('\u{0}');
        key.push_str(&plan_key);
        Some(Cacheable {
            key: Arc::from(key),
            ttl,
            workspace: workspace.to_owned(),
            datasets: datasets.iter().map(|(d, _)| d.clone()).collect(),
        })
    }

    /// The result of `entry`: from the cache, from an identical query running now, or by
    /// running `run` (only in this caller) and keeping what it returns. A result too
    /// large to keep is streamed to this caller and not kept. The flag says whether the
    /// rows came from the cache (or from someone else's run) rather than this caller's.
    ///
    /// # Errors
    /// The query's error, when this caller ran it.
    pub async fn get_or_run<F, Fut>(
        &self,
        entry: &Cacheable,
        memo: Option<(Arc<str>, &[String])>,
        schema: SchemaRef,
        run: F,
    ) -> Result<(BatchStream, bool), Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<BatchStream, Error>>,
    {
        if let Some(hit) = self.entries.get(&entry.key).await {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            self.remember(memo, entry).await;
            return Ok((hit.stream(), true));
        }
        let mut ran = false;
        let mut own_error: Option<Error> = None;
        let mut leftover: Option<BatchStream> = None;
        let max = self.config.max_entry_bytes as usize;
        let filled = self
            .entries
            .try_get_with(Arc::clone(&entry.key), async {
                ran = true;
                let mut batches = Vec::new();
                let mut bytes = 0;
                let mut rows = run().await.map_err(|e| fill_failed(&mut own_error, e))?;
                while let Some(next) = rows.next().await {
                    let batch = next.map_err(|e| fill_failed(&mut own_error, e))?;
                    let (batch, size) = compact(batch);
                    bytes += size;
                    batches.push(batch);
                    if bytes > max {
                        let kept =
                            futures::stream::iter(std::mem::take(&mut batches).into_iter().map(Ok));
                        leftover = Some(Box::pin(kept.chain(rows)));
                        return Err(FillError::TooLarge);
                    }
                }
                Ok(Arc::new(CachedResult {
                    schema: Arc::clone(&schema),
                    batches,
                    bytes,
                    ttl: entry.ttl,
                    workspace: entry.workspace.clone(),
                    datasets: entry.datasets.clone(),
                }))
            })
            .await;
        match filled {
            Ok(result) => {
                if ran {
                    self.stats.misses.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.stats.collapsed.fetch_add(1, Ordering::Relaxed);
                }
                self.remember(memo, entry).await;
                Ok((result.stream(), !ran))
            }
            Err(_) if ran => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                if let Some(rest) = leftover {
                    self.stats.too_large.fetch_add(1, Ordering::Relaxed);
                    return Ok((rest, false));
                }
                Err(own_error.unwrap_or_else(|| Error::Internal("cache fill failed".into())))
            }
            // The identical query someone else ran failed: the same error, unless it was
            // theirs alone (cancelled, timed out) or too large to share.
            Err(e) => match e.as_ref() {
                FillError::Query(sqlstate, message) => Err(Error::Source {
                    sqlstate: *sqlstate,
                    message: message.clone(),
                }),
                FillError::Abandoned | FillError::TooLarge => Ok((run().await?, false)),
            },
        }
    }

    async fn remember(&self, memo: Option<(Arc<str>, &[String])>, entry: &Cacheable) {
        if let Some((k, columns)) = memo {
            let memo = Memo {
                key: Arc::clone(&entry.key),
                columns: columns.to_vec(),
            };
            self.memo.insert(k, Arc::new(memo)).await;
        }
    }

    /// Drop the results of `dataset` of `workspace` (all of the workspace's, or all
    /// results, when `None`), and make sure queries running now do not put old rows back.
    pub fn flush(&self, workspace: Option<&str>, dataset: Option<&str>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.memo.invalidate_all();
        match (workspace, dataset) {
            (Some(ws), Some(d)) => {
                *self
                    .versions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry((ws.to_owned(), d.to_owned()))
                    .or_default() += 1;
                let (ws, d) = (ws.to_owned(), d.to_owned());
                let _ = self.entries.invalidate_entries_if(move |_, v| {
                    v.workspace == ws && v.datasets.contains(&d)
                });
            }
            (Some(ws), None) => {
                let ws = ws.to_owned();
                let _ = self
                    .entries
                    .invalidate_entries_if(move |_, v| v.workspace == ws);
            }
            (None, _) => self.entries.invalidate_all(),
        }
    }

    /// Let moka finish pending evictions and expirations (for exact counts in tests and
    /// metrics).
    pub async fn settle(&self) {
        self.entries.run_pending_tasks().await;
    }
}

/// A batch that owns no more memory than its rows need, and that size. Engine batches
/// are often slices of larger buffers (a filter's output, a limit's); kept as they are,
/// an entry would pin memory its weight does not count.
fn compact(batch: RecordBatch) -> (RecordBatch, usize) {
    use datafusion::arrow::array::{make_array, Array, MutableArrayData};
    let full = batch.get_array_memory_size();
    let needed: usize = batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(usize::MAX))
        .fold(0, usize::saturating_add);
    if full <= needed.saturating_add(needed / 2).saturating_add(4096) {
        return (batch, full);
    }
    let copy = |c: &datafusion::arrow::array::ArrayRef| {
        let data = c.to_data();
        let mut copy = MutableArrayData::new(vec![&data], false, c.len());
        copy.try_extend(0, 0, c.len())
            .map(|()| make_array(copy.freeze()))
    };
    let copied = batch
        .columns()
        .iter()
        .map(copy)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|columns| RecordBatch::try_new(batch.schema(), columns));
    match copied {
        Ok(copied) => {
            let size = copied.get_array_memory_size();
            (copied, size)
        }
        Err(_) => (batch, full),
    }
}

/// Keep a query's error for the caller who ran it; those who waited get its SQLSTATE
/// and message, or run their own when it was this caller's cancel or timeout.
fn fill_failed(own: &mut Option<Error>, e: Error) -> FillError {
    let shared = match &e {
        Error::Canceled | Error::Timeout => FillError::Abandoned,
        other => FillError::Query(other.sqlstate(), other.to_string()),
    };
    *own = Some(e);
    shared
}

/// The text that identifies an optimized plan completely, or `None` when it must not
/// be cached. The plan's `Debug` form holds every node, expression and literal (quoted,
/// typed) but writes subqueries as `<subquery>` and scanned tables by name only, so the
/// plan of every subquery and the identity of every scanned table object are appended,
/// in plan order; and, as a second description of the same plan, its indented display.
fn plan_key(plan: &LogicalPlan) -> Option<String> {
    if matches!(
        plan,
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_)
    ) {
        return None;
    }
    let mut tables = String::new();
    let mut subqueries = String::new();
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        // `Debug` writes a subquery as `<subquery>`: write each one's plan here (nested
        // ones are visited too).
        if let LogicalPlan::Subquery(sq) = node {
            let _ = write!(subqueries, "{:?}\u{0}", sq.subquery);
        }
        if let LogicalPlan::TableScan(scan) = node {
            let catalog = matches!(
                scan.table_name.schema(),
                Some("pg_catalog" | "information_schema" | "biproxy")
            );
            match source_as_provider(&scan.source) {
                Ok(p) if !catalog => {
                    let _ = write!(tables, "{:p};", Arc::as_ptr(&p).cast::<()>());
                }
                _ => ok = false,
            }
        }
        for e in node.expressions() {
            ok &= e
                .exists(|x| Ok(!deterministic(x)))
                .map(|found| !found)
                .unwrap_or(false);
        }
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok.then(|| {
        format!(
            "{plan:?}\u{0}{subqueries}\u{0}{tables}\u{0}{}",
            plan.display_indent()
        )
    })
}

/// Whether an expression node gives the same value for the same rows every time and for
/// everyone.
fn deterministic(e: &Expr) -> bool {
    !matches!(e, Expr::Placeholder(_)) && crate::plan::computes_the_same(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn optimized(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        let plan = ctx.sql(sql).await.unwrap().into_unoptimized_plan();
        ctx.state().optimize(&plan).unwrap()
    }

    fn cache() -> Arc<ResultCache> {
        ResultCache::new(&CacheConfig::default()).unwrap()
    }

    #[tokio::test]
    async fn volatile_functions_and_catalogs_are_not_cached() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS VALUES (1), (2)").await.unwrap();
        let c = cache();
        let ds = [("t".to_owned(), None)];
        let plain = optimized(&ctx, "SELECT column1 FROM t WHERE column1 > 1").await;
        assert!(c.cacheable("w", &ds, &plain).is_some());
        let random = optimized(&ctx, "SELECT column1, random() FROM t").await;
        assert!(c.cacheable("w", &ds, &random).is_none());
        assert!(c.cacheable("w", &[], &plain).is_none(), "no dataset read");
        let zero = [("t".to_owned(), Some(Duration::ZERO))];
        assert!(c.cacheable("w", &zero, &plain).is_none(), "cache_ttl = 0");
    }

    #[tokio::test]
    async fn subqueries_are_part_of_the_key() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS VALUES ('East', 1), ('West', 2)")
            .await
            .unwrap();
        let c = cache();
        let ds = [("t".to_owned(), None)];
        let key = |p: &LogicalPlan| c.cacheable("w", &ds, p).unwrap().key;
        let east = "SELECT (SELECT count(*) FROM t WHERE column1 = 'East')";
        let west = "SELECT (SELECT count(*) FROM t WHERE column1 = 'West')";
        let unoptimized = |sql: &'static str| {
            let ctx = &ctx;
            async move { ctx.sql(sql).await.unwrap().into_unoptimized_plan() }
        };
        assert_ne!(key(&unoptimized(east).await), key(&unoptimized(west).await));
        assert_ne!(
            key(&optimized(&ctx, east).await),
            key(&optimized(&ctx, west).await)
        );
        let exists =
            |v: &str| format!("SELECT 1 WHERE EXISTS (SELECT 1 FROM t WHERE column1 = '{v}')");
        let (e, w) = (exists("East"), exists("West"));
        let (e, w) = (
            ctx.sql(&e).await.unwrap().into_unoptimized_plan(),
            ctx.sql(&w).await.unwrap().into_unoptimized_plan(),
        );
        assert_ne!(key(&e), key(&w));
    }

    #[tokio::test]
    async fn different_literals_and_versions_give_different_keys() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS VALUES ('East'), ('West')")
            .await
            .unwrap();
        let c = cache();
        let ds = [("t".to_owned(), None)];
        let key = |p: &LogicalPlan| c.cacheable("w", &ds, p).unwrap().key;
        let east = optimized(&ctx, "SELECT * FROM t WHERE column1 = 'East'").await;
        let west = optimized(&ctx, "SELECT * FROM t WHERE column1 = 'West'").await;
        let east_again = optimized(&ctx, "SELECT * FROM t WHERE column1 = 'East'").await;
        assert_ne!(key(&east), key(&west));
        assert_eq!(key(&east), key(&east_again));
        let before = key(&east);
        c.flush(Some("w"), Some("t"));
        assert_ne!(key(&east), before, "a flush changes the data version");
        assert_ne!(
            c.cacheable("v", &ds, &east).unwrap().key,
            key(&east),
            "workspaces never share"
        );
    }
}
