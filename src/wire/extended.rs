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
//!
//! Replies wait in the connection's buffer until Sync or Flush, as PostgreSQL's do:
//! a client that sends Bind, Describe, Execute and Sync together gets every reply in one
//! write. pgwire's handlers flush after each reply, a system call and a wake-up of the
//! client each, so Parse, Bind, Describe and Close are overridden too.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{send_execution_response, ExtendedQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, Type, DEFAULT_NAME};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Parse, ParseComplete,
    PortalSuspended, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
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

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME).to_owned();
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        client
            .feed(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        match client.portal_store().get_statement(statement) {
            Some(Entry::Value(stmt)) => {
                let portal = Portal::try_new(&message, stmt)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) if message.parameters.is_empty() => {
                let portal = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
                client.portal_store().put_empty_portal(portal);
            }
            Some(Entry::Empty) => {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".to_owned(),
                    "08P01".to_owned(),
                    format!(
                        "bind message supplies {} parameters, but prepared statement \"{statement}\" requires 0",
                        message.parameters.len()
                    ),
                ))));
            }
            None => return Err(PgWireError::StatementNotFound(statement.to_owned())),
        }
        client
            .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => match client.portal_store().get_statement(name) {
                Some(Entry::Value(stmt)) => {
                    let described = self.do_describe_statement(client, &stmt).await?;
                    feed_description(client, &described).await
                }
                Some(Entry::Empty) => {
                    feed_description(client, &DescribeStatementResponse::no_data()).await
                }
                None => Err(PgWireError::StatementNotFound(name.to_owned())),
            },
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => {
                    let described = self.do_describe_portal(client, &portal).await?;
                    feed_description(client, &described).await
                }
                Some(Entry::Empty) => {
                    feed_description(client, &DescribePortalResponse::no_data()).await
                }
                None => Err(PgWireError::PortalNotFound(name.to_owned())),
            },
            other => Err(PgWireError::InvalidTargetType(other)),
        }
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => client.portal_store().rm_statement(name),
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client
            .feed(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
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
                if !feed_rows(client, results, max_rows).await? {
                    *state = PortalExecutionState::Finished;
                }
                Ok(())
            }
            // Executing a finished portal again returns no rows, as in PostgreSQL.
            _ => send_execution_response(client, Tag::new("SELECT").with_rows(0)).await,
        }
    }
}

/// pgwire's `send_describe_response`, without its flushes: the parameter types of a
/// statement, then its columns or NoData.
async fn feed_description<C, D>(client: &mut C, described: &D) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    D: DescribeResponse + Sync,
{
    if let Some(types) = described.parameters() {
        let oids = types.iter().map(Type::oid).collect();
        client
            .feed(PgWireBackendMessage::ParameterDescription(
                ParameterDescription::new(oids),
            ))
            .await?;
    }
    let reply = if described.is_no_data() {
        PgWireBackendMessage::NoData(NoData::new())
    } else {
        let columns = described.fields().iter().map(Into::into).collect();
        PgWireBackendMessage::RowDescription(RowDescription::new(columns))
    };
    client.feed(reply).await?;
    Ok(())
}

/// Send at most `max_rows` rows of `results` (0 = all), then PortalSuspended when rows
/// are left (returns `true`) or CommandComplete. Rows go out as the buffer fills; the
/// end waits for Sync or Flush.
async fn feed_rows<C>(
    client: &mut C,
    results: &mut QueryResponse,
    max_rows: usize,
) -> PgWireResult<bool>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut rows = 0;
    while max_rows == 0 || rows < max_rows {
        match results.data_rows().next().await {
            Some(row) => {
                client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                rows += 1;
            }
            None => {
                let tag = Tag::new(results.command_tag()).with_rows(rows);
                client
                    .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                    .await?;
                return Ok(false);
            }
        }
    }
    client
        .feed(PgWireBackendMessage::PortalSuspended(PortalSuspended::new()))
        .await?;
    Ok(true)
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
