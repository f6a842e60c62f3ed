//! The extended query protocol: Parse/Bind/Describe/Execute/Sync/Close with named and
//! unnamed statements and portals, typed parameters, and per-column text or binary results.
//!
//! A statement is planned once, at Parse; Bind only supplies values, so a prepared
//! statement executed many times is planned once.
//!
//! Execute streams: pgwire's default collects every row of a portal in memory before
//! sending the first, which for a BI extract means unbounded memory and no rows until
//! the end. [`ExtendedQueryHandler::on_execute`] is overridden to send rows as they come,
//! honouring `max_rows` (PortalSuspended) for cursors.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use futures::SinkExt;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{
    send_execution_response, send_partial_query_response, ExtendedQueryHandler,
};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, Type, DEFAULT_NAME};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::PgWireBackendMessage;

use super::{encode, Connection};
use crate::error::Error;
use crate::plan::Prepared;
use crate::session::Session;

/// Parses and plans statements for one session.
#[derive(Debug)]
pub struct StatementParser {
    shared: Arc<super::Shared>,
    session: Option<Arc<Session>>,
}

impl StatementParser {
    /// Parse and plan one statement (an empty string is no statement).
    async fn plan(&self, session: &Session, sql: &str) -> Result<Option<Arc<Prepared>>, Error> {
        let mut statements = self.shared.parser.parse(sql)?;
        if statements.len() > 1 {
            return Err(Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let Some(stmt) = statements.pop() else {
            return Ok(None);
        };
        Ok(Some(Arc::new(session.prepare(stmt).await?)))
    }
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Arc<Prepared>>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = self
            .session
            .as_ref()
            .ok_or_else(|| Error::Internal("Parse before authentication".into()))?;
        // A statement refused at Parse never reaches Execute: audit it here.
        self.plan(session, sql).await.map_err(|e| {
            let line = self
                .shared
                .audit(session, client.socket_addr(), sql.to_owned());
            super::audited(line, e).into()
        })
    }

    fn get_parameter_types(&self, stmt: &Arc<Prepared>) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .param_types
            .iter()
            .map(|t| {
                t.as_ref()
                    .and_then(|t| arrow_pg::datatypes::into_pg_type(t).ok())
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Arc<Prepared>,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(encode::describe(
            stmt,
            format.unwrap_or(&Format::UnifiedText),
        )?)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Arc<Prepared>;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        Arc::new(StatementParser {
            shared: Arc::clone(&self.shared),
            session: self.session.get().cloned(),
        })
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(p)) => p,
            Some(Entry::Empty) => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name.to_owned())),
        };
        client.set_state(PgWireConnectionState::QueryInProgress);
        let result = self
            .execute_portal(client, &portal, message.max_rows as usize)
            .await;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        result
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Arc<Prepared>>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session()?;
        let prepared = &portal.statement.statement;
        let inferred: Vec<Option<&datafusion::arrow::datatypes::DataType>> =
            prepared.param_types.iter().map(Option::as_ref).collect();
        let mut audit = self
            .shared
            .audit(session, client.socket_addr(), prepared.sql.clone());
        if let (Some(a), Some(plan)) = (audit.as_mut(), prepared.plan.as_ref()) {
            a.datasets = crate::audit::datasets_in(plan, session.datasets());
        }
        let params = arrow_pg::datatypes::df::deserialize_parameters(portal, &inferred)
            .inspect_err(|e| {
                super::audited(audit.take(), Error::InvalidValue(e.to_string()));
            })?;
        super::forget_prepared(client.portal_store(), &prepared.command)?;
        let outcome = session
            .execute(prepared, params)
            .await
            .map_err(|e| super::audited(audit.take(), e))?;
        if let Some(a) = audit.as_mut() {
            a.cache_hit = session.last_cache_hit();
        }
        Ok(encode::respond(
            &prepared.command,
            crate::audit::track(outcome, audit),
            &portal.result_column_format,
        )?)
    }
}

impl Connection {
    /// Run a portal, or continue a suspended one, sending at most `max_rows` rows (0 = all).
    async fn execute_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Arc<Prepared>>,
        max_rows: usize,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = portal.state();
        let mut state = state.lock().await;
        if matches!(*state, PortalExecutionState::Initial) {
            match self.do_query(client, portal, max_rows).await? {
                Response::Query(results) => *state = PortalExecutionState::Suspended(results),
                other => {
                    *state = PortalExecutionState::Finished;
                    return send_non_query(client, other).await;
                }
            }
        }
        match &mut *state {
            PortalExecutionState::Suspended(results) => {
                if !send_partial_query_response(client, results, max_rows).await? {
                    *state = PortalExecutionState::Finished;
                }
                Ok(())
            }
            // Executing a finished portal again returns no rows, as in PostgreSQL.
            _ => send_execution_response(client, Tag::new("SELECT").with_rows(0)).await,
        }
    }
}

/// Send the response of a statement that returns no rows, tracking transaction status.
async fn send_non_query<C>(client: &mut C, response: Response) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let status = client.transaction_status();
    match response {
        Response::Execution(tag) => send_execution_response(client, tag).await,
        Response::TransactionStart(tag) => {
            client.set_transaction_status(status.to_in_transaction_state());
            send_execution_response(client, tag).await
        }
        Response::TransactionEnd(tag) => {
            client.set_transaction_status(status.to_idle_state());
            send_execution_response(client, tag).await
        }
        Response::EmptyQuery => {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
            Ok(())
        }
        Response::Error(e) => Err(PgWireError::UserError(e)),
        Response::CopyOut(copy) => pgwire::api::copy::send_copy_out_response(client, copy).await,
        Response::Query(_) | Response::CopyIn(_) | Response::CopyBoth(_) => {
            Err(Error::NotSupported("COPY FROM is not supported".into()).into())
        }
    }
}
