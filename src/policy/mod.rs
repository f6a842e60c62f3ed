//! Who sees what: each session's own view of its workspace's datasets.
//!
//! A session does not read the workspace's shared `public` schema directly but a
//! [`SessionDatasets`] over it, which leaves out the datasets the member's role and grants
//! do not allow, and hands out every dataset that has row policies wrapped in a view
//! whose plan is the dataset's plan under a filter: the policies, with the user's
//! attributes written in as literals. The planner inlines that view where the query
//! names the dataset, so the filter sits below everything the user wrote — joins,
//! subqueries, window functions, `MEASURE()` — and no query shape can see around it.
//!
//! Of a dataset's policies that apply to the user, one permissive policy must hold and
//! every restrictive one must (as in PostgreSQL). When policies exist but none permissive
//! applies, or a policy names an attribute the user lacks, no row is visible: when in
//! doubt, deny. Admins see every row.
//!
//! Columns can be hidden from roles (the column does not exist for them) or masked for
//! roles (they see a configured expression, such as the last digits of a phone number,
//! in its place); that projection sits above the row filter, so a policy may still use a
//! column its reader cannot see.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{Column, DFSchema};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::utils::{conjunction, disjunction};
use datafusion::logical_expr::{lit, Expr, ExprSchemable, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;

use crate::catalog::datasets::DatasetSchema;
use crate::config::{Attribute, ColumnDoc, PolicyConfig, Role};
use crate::semantic::DatasetTable;

/// What a dataset's configuration says about who sees what in it.
#[derive(Debug, Clone, Default)]
pub struct DatasetAccess {
    /// Row policies.
    pub policies: Vec<PolicyConfig>,
    /// Columns hidden from or masked for some roles.
    pub columns: Vec<ColumnDoc>,
}

/// A member of a workspace, as policies see them.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Login name (`{{user.name}}`).
    pub user: String,
    /// Role in the workspace.
    pub role: Role,
    /// Attributes (`{{user.<key>}}`).
    pub attributes: BTreeMap<String, Attribute>,
    /// The datasets the member is narrowed to, if granted any.
    pub grants: Option<HashSet<String>>,
}

impl Principal {
    /// Everything about the member that shapes their plans, in a stable order: the
    /// result cache's memo keys its entries by it, so no two principals share one.
    pub fn fingerprint(&self) -> String {
        let mut grants: Option<Vec<&String>> = self.grants.as_ref().map(|g| g.iter().collect());
        if let Some(g) = grants.as_mut() {
            g.sort();
        }
        format!(
            "{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}",
            self.user, self.role, self.attributes, grants
        )
    }

    /// Whether the member may use `dataset` at all.
    pub fn may_use(&self, dataset: &str) -> bool {
        match &self.grants {
            Some(granted) => granted.contains(dataset),
            None => self.role != Role::Viewer,
        }
    }
}

/// Check at load time that a policy's filter is a boolean expression over the dataset's
/// columns (placeholders stand for NULL while checking).
///
/// # Errors
/// What is wrong, for a config error at the filter's line.
pub fn check(policy: &PolicyConfig, schema: &SchemaRef) -> Result<(), String> {
    let sql = placeholders(&policy.filter, |_| Some("NULL".to_owned()))?
        .unwrap_or_else(|| "FALSE".to_owned());
    match type_of(&sql, schema)? {
        DataType::Boolean | DataType::Null => Ok(()),
        other => Err(format!(
            "a policy filter must be true or false, not {other}"
        )),
    }
}

/// Check at load time that a column mask is an expression over the dataset's columns
/// whose value can stand in for the column (it is cast to the column's type).
///
/// # Errors
/// What is wrong, for a config error at the mask's line.
pub fn check_mask(mask: &str, column: &str, schema: &SchemaRef) -> Result<(), String> {
    let from = type_of(mask, schema)?;
    let to = schema
        .field_with_name(column)
        .map_err(|_| format!("no column \"{column}\" to mask"))?
        .data_type();
    if datafusion::arrow::compute::can_cast_types(&from, to) {
        Ok(())
    } else {
        Err(format!(
            "a mask of type {from} cannot stand in for a column of type {to}"
        ))
    }
}

/// The type of a SQL expression over `schema`'s columns.
fn type_of(sql: &str, schema: &SchemaRef) -> Result<DataType, String> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| e.to_string())?;
    parse(sql, &df_schema)?
        .get_type(&df_schema)
        .map_err(|e| e.to_string())
}

/// The rows `principal` may see of a dataset with `policies`: `None` when unrestricted.
///
/// # Errors
/// A filter that no longer parses against `schema` (it was checked at load, so this is
/// reported, and the caller denies).
pub fn row_filter(
    policies: &[PolicyConfig],
    principal: &Principal,
    schema: &DFSchema,
) -> Result<Option<Expr>, String> {
    if policies.is_empty() || principal.role == Role::Admin {
        return Ok(None);
    }
    let mut permissive = Vec::new();
    let mut restrictive = Vec::new();
    for p in policies
        .iter()
        .filter(|p| p.applies_to(&principal.user, principal.role))
    {
        let sql = placeholders(&p.filter, |key| attribute(principal, key))?;
        let expr = match sql {
            Some(sql) => parse(&sql, schema)?,
            None => lit(false),
        };
        if p.restrictive {
            restrictive.push(expr);
        } else {
            permissive.push(expr);
        }
    }
    let allowed = disjunction(permissive).unwrap_or_else(|| lit(false));
    Ok(Some(
        conjunction(std::iter::once(allowed).chain(restrictive)).unwrap_or(lit(false)),
    ))
}

/// The literal text of `{{user.<key>}}`: `name` is the login name; a list is written as
/// `a, b, c` for `IN (...)`.
fn attribute(principal: &Principal, key: &str) -> Option<String> {
    if key == "name" {
        return Some(format!("'{}'", principal.user.replace('\'', "''")));
    }
    match principal.attributes.get(key)? {
        Attribute::One(v) => Some(v.clone()),
        Attribute::Many(vs) if vs.is_empty() => None,
        Attribute::Many(vs) => Some(vs.join(", ")),
    }
}

/// `filter` with every `{{user.<key>}}` replaced by `value(key)`; `Ok(None)` when a value
/// is missing.
///
/// # Errors
/// A placeholder that is not `{{user.<key>}}`.
fn placeholders(
    filter: &str,
    value: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let mut out = String::new();
    let mut rest = filter;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed placeholder in \"{filter}\""))?;
        let inner = after[..end].trim();
        let key = inner
            .strip_prefix("user.")
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .ok_or_else(|| {
                format!("\"{{{{{inner}}}}}\" is not a placeholder; write {{{{user.<attribute>}}}}")
            })?;
        match value(key) {
            Some(v) => out.push_str(&v),
            None => return Ok(None),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// A SQL expression over `schema`'s columns.
fn parse(sql: &str, schema: &DFSchema) -> Result<Expr, String> {
    static STATE: OnceLock<SessionState> = OnceLock::new();
    STATE
        .get_or_init(|| SessionContext::new().state())
        .create_logical_expr(sql, schema)
        .map_err(|e| e.to_string())
}

/// A session's `public` schema; see the module documentation.
#[derive(Debug)]
pub struct SessionDatasets {
    shared: Arc<DatasetSchema>,
    principal: Principal,
    access: Arc<HashMap<String, DatasetAccess>>,
    /// Restricted views built so far, with the shared table each was built from (a
    /// dataset whose table was replaced, by a refreshed local copy say, is rebuilt).
    restricted: Mutex<HashMap<String, Restricted>>,
}

/// A dataset under a session's rules, and the shared table it is built on.
#[derive(Debug)]
struct Restricted {
    from: Arc<dyn TableProvider>,
    table: Arc<dyn TableProvider>,
}

impl SessionDatasets {
    /// Whom this view is for.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// `principal`'s view of `shared`, whose datasets have `access` rules (by name).
    pub fn new(
        shared: Arc<DatasetSchema>,
        principal: Principal,
        access: Arc<HashMap<String, DatasetAccess>>,
    ) -> SessionDatasets {
        SessionDatasets {
            shared,
            principal,
            access,
            restricted: Mutex::new(HashMap::new()),
        }
    }

    /// `dataset` under the principal's row filter and column rules, built once per session.
    fn restrict(
        &self,
        name: &str,
        dataset: Arc<dyn TableProvider>,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let Some(access) = self.access.get(name) else {
            return Ok(dataset);
        };
        let role = self.principal.role;
        let hidden: HashSet<&str> = access
            .columns
            .iter()
            .filter(|c| c.hidden_from.contains(&role))
            .map(|c| c.name.as_str())
            .collect();
        let masked: HashMap<&str, &str> = access
            .columns
            .iter()
            .filter(|c| c.masked_for.contains(&role))
            .filter_map(|c| Some((c.name.as_str(), c.mask.as_deref()?)))
            .collect();
        let filtered = !access.policies.is_empty() && role != Role::Admin;
        if !filtered && hidden.is_empty() && masked.is_empty() {
            return Ok(dataset);
        }
        let mut cache = self
            .restricted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(done) = cache.get(name).filter(|r| Arc::ptr_eq(&r.from, &dataset)) {
            return Ok(Arc::clone(&done.table));
        }
        let denied = |why: String| {
            tracing::error!(dataset = name, user = %self.principal.user, reason = %why, "access rules cannot be applied; denying the dataset");
            DataFusionError::Plan(format!(
                "dataset \"{name}\" cannot be shown: its access rules cannot be applied"
            ))
        };
        let from = Arc::clone(&dataset);
        let plan = dataset
            .get_logical_plan()
            .ok_or_else(|| denied("the dataset has no plan to filter".into()))?
            .into_owned();
        let mut plan = LogicalPlanBuilder::from(plan);
        if let Some(filter) =
            row_filter(&access.policies, &self.principal, plan.schema()).map_err(denied)?
        {
            plan = plan.filter(filter)?;
        }
        if !hidden.is_empty() || !masked.is_empty() {
            let schema = Arc::clone(plan.schema());
            let mut columns = Vec::new();
            for (qualifier, field) in schema.iter() {
                let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
                let name = field.name().as_str();
                if hidden.contains(name) {
                    continue;
                }
                columns.push(match masked.get(name) {
                    Some(mask) => parse(mask, &schema)
                        .map_err(denied)?
                        .cast_to(field.data_type(), &schema)?
                        .alias(name),
                    None => column,
                });
            }
            plan = plan.project(columns)?;
        }
        let table: Arc<dyn TableProvider> = Arc::new(DatasetTable::from_plan(plan.build()?));
        cache.insert(
            name.to_owned(),
            Restricted {
                from,
                table: Arc::clone(&table),
            },
        );
        Ok(table)
    }
}

#[async_trait]
impl SchemaProvider for SessionDatasets {
    fn table_names(&self) -> Vec<String> {
        self.shared
            .table_names()
            .into_iter()
            .filter(|n| self.principal.may_use(n))
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if !self.principal.may_use(name) {
            return Ok(None);
        }
        match self.shared.table(name).await? {
            Some(dataset) => self.restrict(name, dataset).map(Some),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.principal.may_use(name) && self.shared.table_exist(name)
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "cannot create \"{name}\": datasets are defined in the configuration"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(attrs: &[(&str, Attribute)]) -> Principal {
        Principal {
            user: "o'brien".into(),
            role: Role::Analyst,
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            grants: None,
        }
    }

    #[test]
    fn placeholders_become_literals_and_a_missing_one_denies() {
        let p = principal(&[
            ("region", Attribute::One("'East'".into())),
            (
                "regions",
                Attribute::Many(vec!["'North'".into(), "'South'".into()]),
            ),
        ]);
        let fill = |f: &str| placeholders(f, |k| attribute(&p, k));
        assert_eq!(
            fill("region = {{user.region}}").unwrap().as_deref(),
            Some("region = 'East'")
        );
        assert_eq!(
            fill("region IN ({{ user.regions }})").unwrap().as_deref(),
            Some("region IN ('North', 'South')")
        );
        assert_eq!(
            fill("owner = {{user.name}}").unwrap().as_deref(),
            Some("owner = 'o''brien'")
        );
        assert_eq!(fill("city = {{user.city}}").unwrap(), None);
        assert!(fill("x = {{region}}").is_err());
        assert!(fill("x = {{user.region").is_err());
    }

    #[test]
    fn viewers_see_only_their_grants() {
        let mut p = principal(&[]);
        p.role = Role::Viewer;
        assert!(!p.may_use("sales"));
        p.grants = Some(HashSet::from(["sales".to_owned()]));
        assert!(p.may_use("sales") && !p.may_use("customers"));
    }
}
