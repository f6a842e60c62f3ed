//! The PostgreSQL protocol, on pgwire: one handler object per connection that turns
//! protocol events into calls on its [`Session`].
//!
//! Owns the startup/SCRAM exchange ([`startup`]), the simple ([`simple`]) and extended
//! ([`extended`]) query protocols, cancel requests ([`cancel`]) and result encoding
//! ([`encode`]). Invariant: nothing here decides what SQL means; that is `plan` and
//! `session`.

pub mod cancel;
pub mod encode;
pub mod extended;
pub mod simple;
pub mod startup;

use std::sync::{Arc, Mutex, OnceLock};

use pgwire::api::RandomPidSecretKeyGenerator;

use crate::auth::Directory;
use crate::config::ServerConfig;
use crate::error::Error;
use crate::plan::{Command, Parser};
use crate::semantic::Model;
use crate::session::Session;
use pgwire::api::store::PortalStore;

/// What every connection shares: config, users, the model, the parser, the cancel map.
#[derive(Debug)]
pub struct Shared {
    /// Server settings.
    pub server: ServerConfig,
    /// Users and memberships.
    pub directory: Directory,
    /// Workspaces and datasets.
    pub model: Model,
    /// The SQL parser.
    pub parser: Parser,
    /// Running sessions by backend pid, for CancelRequest.
    pub cancels: cancel::Registry,
    /// Where each statement is recorded, if configured.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    pids: RandomPidSecretKeyGenerator,
}

impl Shared {
    /// Begin the audit line of `sql`, run in `session` from `client`, if auditing is on.
    fn audit(
        &self,
        session: &Session,
        client: std::net::SocketAddr,
        sql: String,
    ) -> Option<crate::audit::Statement> {
        let log = self.audit.as_ref()?;
        let mut line = crate::audit::Statement::start(Arc::clone(log), sql);
        line.user.clone_from(&session.identity.user);
        line.workspace.clone_from(&session.identity.workspace);
        line.client = client.to_string();
        line.application_name = session
            .settings()
            .get("application_name")
            .unwrap_or_default();
        Some(line)
    }

    /// Assemble the shared state.
    pub fn new(
        server: ServerConfig,
        directory: Directory,
        model: Model,
        audit: Option<Arc<crate::audit::AuditLog>>,
    ) -> Shared {
        Shared {
            server,
            directory,
            model,
            audit,
            parser: Parser::new(),
            cancels: cancel::Registry::default(),
            pids: RandomPidSecretKeyGenerator::default(),
        }
    }
}

/// Write the audit line of a statement that failed before sending rows; returns the error.
fn audited(audit: Option<crate::audit::Statement>, e: Error) -> Error {
    if let Some(a) = audit {
        a.finish(0, Err(&e));
    }
    e
}

/// One client connection's handlers. Created per accepted socket, dropped with it.
#[derive(Debug)]
pub struct Connection {
    shared: Arc<Shared>,
    session: OnceLock<Arc<Session>>,
    auth: Mutex<startup::AuthState>,
    registration: OnceLock<cancel::Registration>,
}

impl Connection {
    /// A fresh connection awaiting its startup message.
    pub fn new(shared: Arc<Shared>) -> Arc<Connection> {
        Arc::new(Connection {
            shared,
            session: OnceLock::new(),
            auth: Mutex::new(startup::AuthState::default()),
            registration: OnceLock::new(),
        })
    }

    /// The session, once authenticated.
    fn session(&self) -> Result<&Arc<Session>, Error> {
        self.session
            .get()
            .ok_or_else(|| Error::Internal("query before authentication".into()))
    }
}

/// Apply `DEALLOCATE` and `DISCARD` to the connection's statements and portals.
///
/// # Errors
/// 26000 when `DEALLOCATE name` names no prepared statement.
fn forget_prepared<S: PortalStore>(store: &S, command: &Command) -> Result<(), Error> {
    match command {
        Command::Deallocate(Some(name)) => {
            if store.get_statement(name).is_none() {
                return Err(Error::UnknownStatement(name.clone()));
            }
            store.rm_statement(name);
        }
        Command::Deallocate(None) | Command::Discard => store.clear_portals(),
        _ => {}
    }
    Ok(())
}
