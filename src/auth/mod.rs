//! Who is connecting: password verification against SCRAM verifiers or a signed token,
//! and the resulting [`Identity`].
//!
//! Owns the user directory, the choice of login method and the membership check. Does not own the protocol exchange
//! (that is `wire::startup`) nor what an identity may see (that is the session catalog).
//! Invariant: no plaintext password is ever stored or logged.

pub mod scram;
pub mod token;

use std::collections::{BTreeMap, HashMap};

use crate::config::{Attribute, Config, Role};
use scram::Verifier;
use token::{Claims, TokenError, TokenVerifier};

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
    /// The claims of the token the user logged in with, as attributes; `None` for a
    /// password login.
    pub claims: Option<BTreeMap<String, Attribute>>,
}

/// How a login name proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// SCRAM-SHA-256 against a configured `[[user]]` (or a decoy, for unknown names).
    Scram,
    /// A signed token sent as a cleartext password: names that are not `[[user]]`s, when
    /// `[token]` is configured.
    Token,
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
    /// A token was refused; the reason is logged, the client sees `BadPassword`'s wording.
    #[error("password authentication failed for user \"{user}\"")]
    BadToken {
        /// Login name.
        user: String,
        /// Why (for the log).
        reason: TokenError,
    },
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
    /// Per workspace, the role of token users who are not listed members.
    token_roles: HashMap<String, Role>,
    tokens: Option<TokenVerifier>,
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
            token_roles: config
                .workspaces
                .iter()
                .filter_map(|w| Some((w.name.clone(), w.token_role?)))
                .collect(),
            tokens: config.token.as_ref().map(TokenVerifier::new),
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

    /// How `user` logs in: configured users by SCRAM; any other name by token when tokens
    /// are configured, else by SCRAM against a decoy (which always fails).
    pub fn method(&self, user: &str) -> Method {
        if self.tokens.is_some() && !self.users.contains_key(user) {
            Method::Token
        } else {
            Method::Scram
        }
    }

    /// Check a token presented as the password of `user`.
    ///
    /// # Errors
    /// [`AuthError::BadToken`] with the reason.
    pub fn verify_token(&self, user: &str, token: &str) -> Result<Claims, AuthError> {
        let verifier = self.tokens.as_ref().ok_or_else(|| AuthError::BadToken {
            user: user.to_owned(),
            reason: TokenError::NoKey("no [token] section".into()),
        })?;
        verifier
            .verify(token, user)
            .map_err(|reason| AuthError::BadToken {
                user: user.to_owned(),
                reason,
            })
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

    /// After a successful password exchange or token check: may this user use this
    /// workspace? Token users who are not listed members are admitted where the workspace
    /// gives them a `token_role`.
    ///
    /// # Errors
    /// [`AuthError::NotMember`].
    pub fn admit(
        &self,
        user: &str,
        workspace: &str,
        claims: Option<Claims>,
    ) -> Result<Identity, AuthError> {
        let is_member = self
            .members
            .get(workspace)
            .is_some_and(|m| m.iter().any(|u| u == user))
            || (claims.is_some() && self.token_roles.contains_key(workspace));
        if is_member {
            Ok(Identity {
                user: user.to_owned(),
                workspace: workspace.to_owned(),
                claims: claims.map(|c| c.attributes),
            })
        } else {
            Err(AuthError::NotMember {
                user: user.to_owned(),
                workspace: workspace.to_owned(),
            })
        }
    }
}
