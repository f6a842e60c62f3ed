//! The listener: accepts sockets, negotiates TLS, enforces the connection limit, runs one
//! task per connection, and shuts down gracefully.
//!
//! Invariant: nothing a client sends can end the process or another session. A protocol
//! violation gets a FATAL error and closes that connection only; a panic in a connection
//! task is contained by tokio and logged.

pub mod frame_limit;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, NoopHandler, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{
    negotiate_tls, process_error, process_message, MaybeTls, PgWireMessageServerCodec,
};
use pgwire::tokio::TlsAcceptor;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;
use crate::auth::Directory;
use crate::config::{Config, TlsConfig};
use crate::error::SqlState;
use crate::plan::Prepared;
use crate::semantic::{self, ModelError};
use crate::wire::{Connection, Shared};
use frame_limit::{Framing, Limited};

/// How long a client may take from connecting to finishing authentication.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long shutdown waits for running sessions before closing them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The model (sources and datasets) failed to load.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The audit log file could not be opened.
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The admin interface could not be started.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
}

type Socket = Framed<Limited<MaybeTls>, PgWireMessageServerCodec<Arc<Prepared>>>;

/// A bound, ready server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    recovery: Option<semantic::recovery::Recovery>,
    admin: Option<crate::admin::Admin>,
}

impl Server {
    /// Load the model (generating demo data if configured), then bind the listener.
    ///
    /// # Errors
    /// [`ServerError`] naming what failed.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let tls = config.server.tls.as_ref().map(tls_acceptor).transpose()?;
        let mut model = semantic::build(&config, true).await?;
        let recovery = model.take_recovery();
        let admin = match &config.admin {
            Some(a) => Some(crate::admin::Admin::bind(a).await?),
            None => None,
        };
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let audit = match &config.server.audit_log {
            None => None,
            Some(crate::config::AuditTarget::Stdout) => Some(Arc::new(AuditLog::stdout())),
            Some(crate::config::AuditTarget::File(path)) => {
                Some(Arc::new(AuditLog::file(path).map_err(|source| {
                    ServerError::Audit {
                        path: path.clone(),
                        source,
                    }
                })?))
            }
        };
        let shared = Arc::new(Shared::new(
            config.server.clone(),
            Directory::new(&config),
            model,
            audit,
        ));
        Ok(Server {
            listener,
            shared,
            tls,
            shutdown: CancellationToken::new(),
            recovery,
            admin,
        })
    }

    /// The admin interface's bound address, if one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// The bound address (useful when the config asked for port 0).
    ///
    /// # Errors
    /// The OS error, if the socket has none.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Cancel this token to stop accepting and drain.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Accept connections until the shutdown token is cancelled, then drain.
    pub async fn run(self) {
        let limit = Arc::new(Semaphore::new(self.shared.server.max_connections));
        let tasks = TaskTracker::new();
        if let Some(recovery) = self.recovery {
            tasks.spawn(recovery.run(self.shutdown.clone()));
        }
        self.shared
            .model
            .accelerations
            .spawn(&tasks, &self.shutdown);
        if let Some(admin) = self.admin {
            tracing::info!(addr = %admin.local_addr().map(|a| a.to_string()).unwrap_or_default(), "admin interface listening");
            tasks.spawn(admin.run(Arc::clone(&self.shared), self.shutdown.clone()));
        }
        tracing::info!(addr = %self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = self.tls.is_some(), "listening");
        loop {
            let accepted = tokio::select! {
                () = self.shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = Arc::clone(&limit).try_acquire_owned().ok();
            let shared = Arc::clone(&self.shared);
            let tls = self.tls.clone();
            tasks.spawn(async move {
                if let Err(e) = serve(tcp, tls, shared, permit.is_some()).await {
                    tracing::debug!(%peer, cause = %e, "connection ended with an I/O error");
                }
                drop(permit);
            });
        }
        tasks.close();
        tracing::info!(open = tasks.len(), "shutting down: draining connections");
        if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = tasks.len(),
                "drain timeout: closing remaining connections"
            );
        }
        tracing::info!("stopped");
    }
}

fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, ServerError> {
    use tokio_rustls::rustls;
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ServerError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    let certs = rustls_pemfile::certs(&mut read(&tls.cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("bad certificate in {}: {e}", tls.cert.display())))?;
    let key = rustls_pemfile::private_key(&mut read(&tls.key)?.as_slice())
        .map_err(|e| ServerError::Tls(format!("bad key in {}: {e}", tls.key.display())))?
        .ok_or_else(|| ServerError::Tls(format!("no private key in {}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(format!("certificate and key do not match: {e}")))?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serve one client connection to its end.
async fn serve(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    admitted: bool,
) -> io::Result<()> {
    let max = shared.server.max_message_bytes;
    let socket = match tokio::time::timeout(STARTUP_TIMEOUT, negotiate_tls(tcp, tls)).await {
        Ok(Ok(Some(s))) => s,
        // Timed out, or direct TLS without TLS configured: nothing to answer.
        Ok(Ok(None)) | Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
    };
    let (mut socket, violation) = limit(socket, max);
    if let Some(e) = violation {
        return refuse(
            &mut socket,
            SqlState::PROTOCOL_VIOLATION,
            &format!("invalid message from client: {e}"),
        )
        .await;
    }
    if !admitted {
        return refuse(
            &mut socket,
            SqlState::TOO_MANY_CONNECTIONS,
            "sorry, too many clients already",
        )
        .await;
    }
    let connection = Connection::new(Arc::clone(&shared));
    let deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        let in_startup = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let msg = if in_startup {
            tokio::select! {
                () = &mut deadline => return refuse(&mut socket, SqlState::PROTOCOL_VIOLATION, "startup timed out").await,
                m = socket.next() => m,
            }
        } else {
            socket.next().await
        };
        let msg = match msg {
            None => return Ok(()),
            Some(Err(e)) => {
                tracing::debug!(cause = %e, "protocol violation");
                return refuse(
                    &mut socket,
                    SqlState::PROTOCOL_VIOLATION,
                    &format!("invalid message from client: {e}"),
                )
                .await;
            }
            Some(Ok(PgWireFrontendMessage::Terminate(_))) => return Ok(()),
            Some(Ok(m)) => m,
        };
        let is_extended = msg.is_extended_query();
        let result = process_message(
            msg,
            &mut socket,
            Arc::clone(&connection),
            Arc::clone(&connection),
            Arc::clone(&connection),
            Arc::new(NoopHandler),
            Arc::clone(&shared),
        )
        .await;
        if let Err(e) = result {
            if in_startup {
                return send_fatal(&mut socket, e).await;
            }
            process_error(&mut socket, e, is_extended).await?;
        }
    }
}

/// Rebuild the framed socket over a stream that enforces the message size limit. Bytes
/// read during TLS negotiation are checked too; a violation among them is returned so
/// the caller can answer it on the rebuilt socket.
fn limit(
    socket: Framed<MaybeTls, PgWireMessageServerCodec<Arc<Prepared>>>,
    max: usize,
) -> (Socket, Option<io::Error>) {
    let parts = socket.into_parts();
    let mut framing = Framing::new(max);
    let violation = framing.observe(&parts.read_buf).err();
    let mut new_parts = FramedParts::new(Limited::new(parts.io, framing), parts.codec);
    new_parts.read_buf = parts.read_buf;
    new_parts.write_buf = parts.write_buf;
    (Framed::from_parts(new_parts), violation)
}

async fn refuse(socket: &mut Socket, state: SqlState, message: &str) -> io::Result<()> {
    let info = ErrorInfo::new("FATAL".into(), state.0.into(), message.into());
    send_fatal(socket, PgWireError::UserError(Box::new(info))).await
}

/// Send a FATAL error (no ReadyForQuery: the session is over) and close.
async fn send_fatal(socket: &mut Socket, error: PgWireError) -> io::Result<()> {
    let info: ErrorInfo = error.into();
    socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await?;
    socket.close().await
}
