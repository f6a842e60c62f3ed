//! The simple query protocol: one string, possibly several statements, text results.
//!
//! Statements run in order; the first error stops the rest and is reported after the
//! results of those before it, as PostgreSQL does.

use std::fmt::Debug;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use futures::Sink;
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::{encode, Connection};
use crate::error::Error;

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session()?;
        tracing::debug!(user = %session.identity.user, "simple query");
        let statements = self.shared.parser.parse(query)?;
        let mut responses = Vec::with_capacity(statements.len());
        for stmt in statements {
            match self.run_one(client, stmt).await {
                Ok(r) => responses.push(r),
                Err(e) => {
                    tracing::debug!(code = e.sqlstate().0, error = %e, "statement failed");
                    responses.push(Response::Error(Box::new(e.error_info())));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

impl Connection {
    async fn run_one<C>(
        &self,
        client: &mut C,
        stmt: datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<Response, Error>
    where
        C: ClientInfo + ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        let session = self.session()?;
        let sql = stmt.to_string();
        let mut audit = self
            .shared
            .audit(session, client.socket_addr(), sql.clone());
        if let Some((outcome, datasets)) = session.cached(&sql).await {
            // Asked before by the same principal and still cached: no planning at all.
            let command = crate::plan::classify::classify(stmt)?;
            if let Some(a) = audit.as_mut() {
                a.datasets = datasets;
                a.cache_hit = true;
            }
            return encode::respond(
                &command,
                crate::audit::track(outcome, audit),
                &Format::UnifiedText,
            );
        }
        let prepared = match session.prepare(stmt).await {
            Ok(p) => p,
            Err(e) => return Err(super::audited(audit, e)),
        };
        if let (Some(a), Some(plan)) = (audit.as_mut(), prepared.plan.as_ref()) {
            a.datasets = crate::audit::datasets_in(plan, session.datasets());
        }
        super::forget_prepared(client.portal_store(), &prepared.command)?;
        match session
            .execute(&prepared, ParamValues::List(Vec::new()))
            .await
        {
            Ok(outcome) => {
                if let Some(a) = audit.as_mut() {
                    a.cache_hit = session.last_cache_hit();
                }
                encode::respond(
                    &prepared.command,
                    crate::audit::track(outcome, audit),
                    &Format::UnifiedText,
                )
            }
            Err(e) => Err(super::audited(audit, e)),
        }
    }
}
