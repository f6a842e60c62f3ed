//! Who is connecting: password verification against SCRAM verifiers, and the resulting
//! [`Identity`].
//!
//! Owns the user directory and the membership check. Does not own the protocol exchange
//! (that is `wire::startup`) nor what an identity may see (that is the session catalog).
//! Invariant: no plaintext password is ever stored or logged.

pub mod scram;

use std::collections::HashMap;

use crate::config::Config;
use scram::Verifier;

/// Compare secrets without an early exit, so timing does not reveal how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An authenticated person connected to one workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Login name.
    pub user: String,
    /// The workspace (database) connected to.
    pub workspace: String,
}

/// Why a login was refused. The client sees the PostgreSQL wording for the SQLSTATE;
/// the log sees the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The startup message named no user.
    #[error("no user name given in the startup message")]
    NoUser,
    /// No such workspace.
    #[error("database \"{0}\" does not exist")]
    UnknownWorkspace(String),
    /// Unknown user or wrong password: the client cannot tell which.
    #[error("password authentication failed for user \"{0}\"")]
    BadPassword(String),
    /// Valid user, but not a member of the workspace.
    #[error("user \"{user}\" is not a member of workspace \"{workspace}\"")]
    NotMember {
        /// Login name.
        user: String,
        /// Workspace asked for.
        workspace: String,
    },
}

/// Users and workspace memberships, built once from the config.
#[derive(Debug, Default)]
pub struct Directory {
    users: HashMap<String, Verifier>,
    members: HashMap<String, Vec<String>>,
    /// A verifier for unknown users, so a probe cannot tell unknown from wrong password.
    decoy: Option<Verifier>,
}

impl Directory {
    /// Build the directory from a validated config.
    pub fn new(config: &Config) -> Directory {
        Directory {
            users: config
                .users
                .iter()
                .map(|u| (u.name.clone(), u.verifier.clone()))
                .collect(),
            members: config
                .workspaces
                .iter()
                .map(|w| (w.name.clone(), w.members.clone()))
                .collect(),
            decoy: Some(Verifier::generate("", scram::DEFAULT_ITERATIONS)),
        }
    }

    /// Check the workspace exists; done before the password exchange, like PostgreSQL.
    ///
    /// # Errors
    /// [`AuthError::UnknownWorkspace`].
    pub fn workspace_exists(&self, workspace: &str) -> Result<(), AuthError> {
        if self.members.contains_key(workspace) {
            Ok(())
        } else {
            Err(AuthError::UnknownWorkspace(workspace.to_owned()))
        }
    }

    /// The verifier to run SCRAM against. Unknown users get a decoy verifier whose
    /// exchange always fails, so timing and messages do not reveal which users exist.
    pub fn verifier(&self, user: &str) -> (Verifier, bool) {
        match self.users.get(user) {
            Some(v) => (v.clone(), true),
            None => (
                self.decoy
                    .clone()
                    .unwrap_or_else(|| Verifier::generate("", scram::DEFAULT_ITERATIONS)),
                false,
            ),
        }
    }

    /// After a successful password exchange: may this user use this workspace?
    ///
    /// # Errors
    /// [`AuthError::NotMember`].
    pub fn admit(&self, user: &str, workspace: &str) -> Result<Identity, AuthError> {
        let is_member = self
            .members
            .get(workspace)
            .is_some_and(|m| m.iter().any(|u| u == user));
        if is_member {
            Ok(Identity {
                user: user.to_owned(),
                workspace: workspace.to_owned(),
            })
        } else {
            Err(AuthError::NotMember {
                user: user.to_owned(),
                workspace: workspace.to_owned(),
            })
        }
    }
}
