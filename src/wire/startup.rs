//! Startup: protocol negotiation, TLS policy, the SCRAM-SHA-256 exchange against stored
//! verifiers or a signed token sent as the password, workspace membership, and the
//! session that results.
//!
//! Failures are FATAL and close the connection, like PostgreSQL's. The client learns the
//! PostgreSQL wording for its SQLSTATE; the log learns the reason (unknown user, wrong
//! proof, not a member).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::{
    ClientInfo, PgWireConnectionState, PidSecretKeyGenerator, METADATA_DATABASE, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::Connection;
use crate::auth::scram::{Exchange, DEFAULT_ITERATIONS, MECHANISM};
use crate::auth::token::Claims;
use crate::auth::{AuthError, Identity, Method};
use crate::error::SqlState;
use crate::session::settings::SERVER_VERSION;
use crate::session::Session;

/// Where a connection is in its login.
#[derive(Debug, Default)]
pub enum AuthState {
    /// Waiting for the startup message.
    #[default]
    Initial,
    /// AuthenticationSASL sent; waiting for the client-first message.
    Started {
        /// Login name.
        user: String,
        /// Workspace asked for.
        workspace: String,
    },
    /// Server-first sent; waiting for the client-final message.
    Exchanging {
        /// Login name.
        user: String,
        /// Workspace asked for.
        workspace: String,
        /// The SCRAM exchange.
        exchange: Box<Exchange>,
        /// Whether the user exists (unknown users always fail, after the same work).
        known: bool,
    },
    /// AuthenticationCleartextPassword sent; waiting for the token.
    AwaitingToken {
        /// Login name.
        user: String,
        /// Workspace asked for.
        workspace: String,
    },
    /// Authenticated.
    Done,
}

fn fatal(state: SqlState, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        state.0.to_owned(),
        message,
    )))
}

fn auth_failure(err: &AuthError) -> PgWireError {
    let state = match err {
        AuthError::NoUser | AuthError::NotMember { .. } => SqlState::INVALID_AUTHORIZATION,
        AuthError::UnknownWorkspace(_) => SqlState::INVALID_CATALOG_NAME,
        AuthError::BadPassword(_) | AuthError::BadToken { .. } => SqlState::INVALID_PASSWORD,
    };
    fatal(state, err.to_string())
}

#[async_trait]
impl StartupHandler for Connection {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                self.on_startup_message(client).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                self.on_password(client, msg).await
            }
            _ => Err(fatal(
                SqlState::PROTOCOL_VIOLATION,
                "unexpected message during authentication".into(),
            )),
        }
    }
}

impl Connection {
    async fn on_startup_message<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let tls_required = self.shared.server.tls.as_ref().is_some_and(|t| t.required);
        if tls_required && !client.is_secure() {
            return Err(fatal(
                SqlState::INVALID_AUTHORIZATION,
                "this server requires TLS: connect with sslmode=require".into(),
            ));
        }
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .ok_or_else(|| auth_failure(&AuthError::NoUser))?;
        let workspace = client
            .metadata()
            .get(METADATA_DATABASE)
            .cloned()
            .unwrap_or_else(|| user.clone());
        if let Err(e) = self.shared.directory.workspace_exists(&workspace) {
            tracing::info!(%user, %workspace, peer = %client.socket_addr(), "login refused: unknown workspace");
            return Err(auth_failure(&e));
        }
        let request = match self.shared.directory.method(&user) {
            Method::Scram => {
                *self.auth_state() = AuthState::Started { user, workspace };
                Authentication::SASL(vec![MECHANISM.to_owned()])
            }
            Method::Token => {
                // A token is a bearer secret: where TLS is offered, it must be used.
                if self.shared.server.tls.is_some() && !client.is_secure() {
                    tracing::info!(%user, peer = %client.socket_addr(), "login refused: token without TLS");
                    return Err(fatal(
                        SqlState::INVALID_AUTHORIZATION,
                        "token logins need TLS: connect with sslmode=require".into(),
                    ));
                }
                *self.auth_state() = AuthState::AwaitingToken { user, workspace };
                Authentication::CleartextPassword
            }
        };
        client.set_state(PgWireConnectionState::AuthenticationInProgress);
        client
            .send(PgWireBackendMessage::Authentication(request))
            .await?;
        Ok(())
    }

    async fn on_password<C>(&self, client: &mut C, msg: PasswordMessageFamily) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = std::mem::take(&mut *self.auth_state());
        match state {
            AuthState::Started { user, workspace } => {
                let initial = msg.into_sasl_initial_response()?;
                if initial.auth_method != MECHANISM {
                    return Err(fatal(
                        SqlState::INVALID_AUTHORIZATION,
                        format!(
                            "authentication method \"{}\" is not supported; use {MECHANISM}",
                            initial.auth_method
                        ),
                    ));
                }
                let (verifier, known) = self.shared.directory.verifier(&user);
                let data = initial.data.unwrap_or_default();
                let (server_first, exchange) = verifier.start(&data).map_err(|e| {
                    tracing::info!(%user, cause = %e, "login refused");
                    auth_failure(&AuthError::BadPassword(user.clone()))
                })?;
                *self.auth_state() = AuthState::Exchanging {
                    user,
                    workspace,
                    exchange: Box::new(exchange),
                    known,
                };
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLContinue(server_first.into_bytes().into()),
                    ))
                    .await?;
                Ok(())
            }
            AuthState::Exchanging {
                user,
                workspace,
                exchange,
                known,
            } => {
                let response = msg.into_sasl_response()?;
                let server_final = exchange
                    .finish(&response.data)
                    .map_err(|e| e.to_string())
                    .and_then(|f| if known { Ok(f) } else { Err("no such user".into()) })
                    .map_err(|cause| {
                        tracing::info!(%user, %cause, peer = %client.socket_addr(), "login refused: bad password");
                        auth_failure(&AuthError::BadPassword(user.clone()))
                    })?;
                let identity = self.admit(&user, &workspace, None)?;
                client
                    .feed(PgWireBackendMessage::Authentication(
                        Authentication::SASLFinal(server_final.into_bytes().into()),
                    ))
                    .await?;
                self.complete(client, identity).await
            }
            AuthState::AwaitingToken { user, workspace } => {
                let token = msg.into_password()?.password;
                let claims = self
                    .shared
                    .directory
                    .verify_token(&user, &token)
                    .map_err(|e| {
                        if let AuthError::BadToken { reason, .. } = &e {
                            tracing::info!(%user, %reason, peer = %client.socket_addr(), "login refused: bad token");
                        }
                        auth_failure(&e)
                    })?;
                let identity = self.admit(&user, &workspace, Some(claims))?;
                self.complete(client, identity).await
            }
            AuthState::Initial | AuthState::Done => Err(fatal(
                SqlState::PROTOCOL_VIOLATION,
                "unexpected password message".into(),
            )),
        }
    }

    fn admit(&self, user: &str, workspace: &str, claims: Option<Claims>) -> PgWireResult<Identity> {
        self.shared
            .directory
            .admit(user, workspace, claims)
            .map_err(|e| {
                tracing::info!(%user, %workspace, "login refused: not a member");
                auth_failure(&e)
            })
    }

    /// The login succeeded: open the session and tell the client it may send queries.
    async fn complete<C>(&self, client: &mut C, identity: Identity) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.open_session(client, identity)?;
        finish_authentication(client, &self.parameters()).await?;
        *self.auth_state() = AuthState::Done;
        Ok(())
    }

    fn open_session<C: ClientInfo>(&self, client: &mut C, identity: Identity) -> PgWireResult<()> {
        let workspace = self
            .shared
            .model
            .workspace(&identity.workspace)
            .ok_or_else(|| {
                auth_failure(&AuthError::UnknownWorkspace(identity.workspace.clone()))
            })?;
        tracing::info!(user = %identity.user, workspace = %identity.workspace, peer = %client.socket_addr(), tls = client.is_secure(), token = identity.claims.is_some(), "session started");
        let session = Arc::new(Session::new(
            identity,
            workspace,
            self.shared.server.statement_timeout,
            client.metadata().iter(),
        ));
        let (pid, secret) = self.shared.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret.clone());
        let _ = self
            .registration
            .set(self.shared.cancels.register(pid, &secret, &session));
        let _ = self.session.set(session);
        Ok(())
    }

    fn parameters(&self) -> DefaultServerParameterProvider {
        let mut p = DefaultServerParameterProvider::default();
        p.server_version = SERVER_VERSION.to_owned();
        p.is_superuser = false;
        p.default_transaction_read_only = true;
        p.search_path = "\"$user\", public".to_owned();
        p.scram_iterations = DEFAULT_ITERATIONS as usize;
        p.time_zone = "UTC".to_owned();
        p.date_style = "ISO, MDY".to_owned();
        p
    }

    fn auth_state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.auth.lock().unwrap_or_else(|p| p.into_inner())
    }
}
