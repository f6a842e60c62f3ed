//! Who may see what, as configured: users and their attributes, workspaces with their
//! members, roles and grants, and the row policies of datasets. Checked here for what needs no data (names, kinds); a
//! policy's filter is type-checked against its dataset's columns when the dataset is
//! planned (`policy::check`).

use std::collections::{BTreeMap, HashSet};

use toml::Spanned;

use super::{file, Origin, Resolver};
use crate::auth::scram::Verifier;

/// A user, resolved.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// SCRAM verifier.
    pub verifier: Verifier,
    /// What row policies know of the user.
    pub attributes: BTreeMap<String, Attribute>,
}

/// A workspace, resolved.
#[derive(Debug, Clone)]
pub struct WorkspaceConfig {
    /// Database name.
    pub name: String,
    /// Human description.
    pub description: String,
    /// Users allowed to connect.
    pub members: Vec<String>,
    /// Members' roles; a member not listed is an analyst.
    pub roles: BTreeMap<String, Role>,
    /// Datasets each listed member is narrowed to.
    pub grants: BTreeMap<String, Vec<String>>,
    /// The role of token users who are not listed members; `None` refuses them.
    pub token_role: Option<Role>,
}

impl WorkspaceConfig {
    /// The role of a member.
    pub fn role_of(&self, user: &str) -> Role {
        self.roles.get(user).copied().unwrap_or(Role::Analyst)
    }
}

/// A member's role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Every dataset, every row: row policies do not apply.
    Admin,
    /// Datasets, under row policies (raw source tables are not offered yet).
    Developer,
    /// Datasets, under row policies. The default.
    Analyst,
    /// Only the datasets granted to them, under row policies.
    Viewer,
}

impl Role {
    fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "admin" => Role::Admin,
            "developer" => Role::Developer,
            "analyst" => Role::Analyst,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }

    /// The name used in config and in the `biproxy` schema.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
        }
    }
}

/// A user attribute, already written as SQL literals so a policy can use it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// `region = "East"` → `'East'`.
    One(String),
    /// `regions = ["North", "South"]` → `'North'`, `'South'` (for `IN (...)`).
    Many(Vec<String>),
}

/// A row policy of a dataset: a boolean SQL expression over its columns, with
/// `{{user.<attribute>}}` placeholders.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The filter as written.
    pub filter: String,
    /// Users it applies to; with `roles` empty as well, everyone (but admins).
    pub users: Vec<String>,
    /// Roles it applies to.
    pub roles: Vec<Role>,
    /// Restrictive policies must all hold; of the permissive ones (the default), one must.
    pub restrictive: bool,
    /// Why it exists.
    pub description: String,
    /// Where its filter was written.
    pub origin: Origin,
}

impl PolicyConfig {
    /// Whether the policy names `user` or `role`, or names no one (so applies to all).
    pub fn applies_to(&self, user: &str, role: Role) -> bool {
        (self.users.is_empty() && self.roles.is_empty())
            || self.users.iter().any(|u| u == user)
            || self.roles.contains(&role)
    }
}

impl Resolver<'_> {
    pub(super) fn users(&mut self, users: Vec<file::UserSection>) -> Vec<UserConfig> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, u) in users.into_iter().enumerate() {
            if !seen.insert(u.name.get_ref().clone()) {
                self.error(
                    &u.name,
                    format!("user[{i}].name"),
                    format!("duplicate user \"{}\"", u.name.get_ref()),
                );
            }
            let attributes = self.attributes(&u.attributes, i);
            match Verifier::parse(u.password.get_ref()) {
                Ok(verifier) => out.push(UserConfig {
                    name: u.name.into_inner(),
                    verifier,
                    attributes,
                }),
                Err(e) => self.error(
                    &u.password,
                    format!("user[{i}].password"),
                    format!("{e}; make one with `biproxy hash-password`"),
                ),
            }
        }
        out
    }

    pub(super) fn workspaces(
        &mut self,
        ws: Vec<file::WorkspaceSection>,
        users: &[UserConfig],
        datasets: &[(String, String)],
        tokens: bool,
    ) -> Vec<WorkspaceConfig> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, w) in ws.into_iter().enumerate() {
            if !seen.insert(w.name.get_ref().clone()) {
                self.error(
                    &w.name,
                    format!("workspace[{i}].name"),
                    format!("duplicate workspace \"{}\"", w.name.get_ref()),
                );
            }
            // Without [token], a member must be a [[user]]; with it, a member who is not
            // one logs in with a token.
            for (j, m) in w.members.iter().enumerate() {
                if !tokens && !users.iter().any(|u| &u.name == m.get_ref()) {
                    self.error(
                        m,
                        format!("workspace[{i}].members[{j}]"),
                        format!(
                            "no [[user]] named \"{}\" (and no [token] section for token logins)",
                            m.get_ref()
                        ),
                    );
                }
            }
            let own: Vec<&str> = datasets
                .iter()
                .filter(|(ws, _)| ws == w.name.get_ref())
                .map(|(_, d)| d.as_str())
                .collect();
            let (roles, grants) = self.roles(&w, i, &own);
            let token_role = w.token_role.as_ref().and_then(|r| {
                let field = format!("workspace[{i}].token_role");
                if !tokens {
                    self.error(r, &field, "token logins need a [token] section");
                }
                self.role_list(std::slice::from_ref(r), &field).pop()
            });
            out.push(WorkspaceConfig {
                name: w.name.into_inner(),
                description: w.description,
                members: w.members.into_iter().map(Spanned::into_inner).collect(),
                roles,
                grants,
                token_role,
            });
        }
        out
    }

    /// A user's `attributes` table as SQL literals.
    fn attributes(
        &mut self,
        attrs: &BTreeMap<String, Spanned<toml::Value>>,
        user: usize,
    ) -> BTreeMap<String, Attribute> {
        let mut out = BTreeMap::new();
        for (key, value) in attrs {
            let field = format!("user[{user}].attributes.{key}");
            let attribute = match value.get_ref() {
                toml::Value::Array(items) => items
                    .iter()
                    .map(literal)
                    .collect::<Option<Vec<_>>>()
                    .map(Attribute::Many),
                single => literal(single).map(Attribute::One),
            };
            match attribute {
                Some(a) => {
                    out.insert(key.clone(), a);
                }
                None => self.error(
                    value,
                    field,
                    "an attribute is a string, number or boolean, or a list of them",
                ),
            }
        }
        out
    }

    /// A workspace's `roles` (member → role) and `grants` (member → datasets).
    fn roles(
        &mut self,
        w: &file::WorkspaceSection,
        i: usize,
        datasets: &[&str],
    ) -> (BTreeMap<String, Role>, BTreeMap<String, Vec<String>>) {
        let datasets_of_workspace = datasets;
        let is_member = |u: &str| w.members.iter().any(|m| m.get_ref() == u);
        let mut roles = BTreeMap::new();
        for (user, role) in &w.roles {
            let field = format!("workspace[{i}].roles.{user}");
            if !is_member(user) {
                self.error(role, &field, format!("\"{user}\" is not in `members`"));
            }
            match Role::parse(role.get_ref()) {
                Some(r) => {
                    roles.insert(user.clone(), r);
                }
                None => self.error(
                    role,
                    field,
                    format!(
                        "unknown role \"{}\"; use admin, developer, analyst or viewer",
                        role.get_ref()
                    ),
                ),
            }
        }
        let mut grants = BTreeMap::new();
        for (user, datasets) in &w.grants {
            if !is_member(user) {
                self.error(
                    datasets,
                    format!("workspace[{i}].grants.{user}"),
                    format!("\"{user}\" is not in `members`"),
                );
            }
            let names: Vec<String> = datasets
                .get_ref()
                .iter()
                .map(|d| d.to_lowercase())
                .collect();
            for name in names
                .iter()
                .filter(|n| !datasets_of_workspace.contains(&n.as_str()))
            {
                self.error(
                    datasets,
                    format!("workspace[{i}].grants.{user}"),
                    format!("no dataset \"{name}\" in this workspace"),
                );
            }
            grants.insert(user.clone(), names);
        }
        (roles, grants)
    }

    /// Role names, each checked.
    pub(super) fn role_list(&mut self, names: &[Spanned<String>], field: &str) -> Vec<Role> {
        let mut out = Vec::new();
        for r in names {
            match Role::parse(r.get_ref()) {
                Some(role) => out.push(role),
                None => self.error(
                    r,
                    field,
                    format!(
                        "unknown role \"{}\"; use admin, developer, analyst or viewer",
                        r.get_ref()
                    ),
                ),
            }
        }
        out
    }

    /// A dataset's `[[dataset.policy]]` sections.
    pub(super) fn policies(
        &mut self,
        ps: &[file::PolicySection],
        dataset: usize,
    ) -> Vec<PolicyConfig> {
        let mut out = Vec::new();
        for (j, p) in ps.iter().enumerate() {
            let roles = self.role_list(&p.roles, &format!("dataset[{dataset}].policy[{j}].roles"));
            out.push(PolicyConfig {
                filter: p.filter.get_ref().clone(),
                users: p.users.iter().map(|u| u.get_ref().clone()).collect(),
                roles,
                restrictive: p.restrictive,
                description: p.description.clone(),
                origin: self.origin(&p.filter),
            });
        }
        out
    }
}

/// A TOML scalar as a SQL literal.
fn literal(v: &toml::Value) -> Option<String> {
    Some(match v {
        toml::Value::String(s) => text_literal(s),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) if f.is_finite() => f.to_string(),
        toml::Value::Boolean(b) => bool_literal(*b),
        _ => return None,
    })
}

impl Attribute {
    /// A signed token's claim as an attribute, so a token user's policies read their
    /// claims exactly as a configured user's read their attributes. Objects and nested
    /// lists have no SQL literal: `None`.
    pub fn from_json(v: &serde_json::Value) -> Option<Attribute> {
        match v {
            serde_json::Value::Array(items) => items
                .iter()
                .map(json_literal)
                .collect::<Option<Vec<_>>>()
                .map(Attribute::Many),
            single => json_literal(single).map(Attribute::One),
        }
    }
}

/// A JSON scalar as a SQL literal.
fn json_literal(v: &serde_json::Value) -> Option<String> {
    Some(match v {
        serde_json::Value::String(s) => text_literal(s),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => bool_literal(*b),
        _ => return None,
    })
}

fn text_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn bool_literal(b: bool) -> String {
    if b { "TRUE" } else { "FALSE" }.to_owned()
}
