//! CancelRequest: a client opens a second connection carrying the (pid, secret key) it
//! got at startup; the matching session's running query is cancelled.
//!
//! Invariant: a cancel needs both the pid and the exact secret, compared in constant time,
//! so one client cannot cancel another's queries by guessing pids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;

use crate::auth::constant_time_eq;
use crate::session::Session;

type Entries = HashMap<i32, (Bytes, Weak<Session>)>;

/// Server-wide map from backend pid to the session it belongs to.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Arc<Mutex<Entries>>,
}

/// Removes a session's entry when its connection ends.
#[derive(Debug)]
pub struct Registration {
    pid: i32,
    entries: Arc<Mutex<Entries>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.entries).remove(&self.pid);
    }
}

fn lock(entries: &Mutex<Entries>) -> std::sync::MutexGuard<'_, Entries> {
    entries.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// Register a session under its pid and secret.
    pub fn register(&self, pid: i32, secret: &SecretKey, session: &Arc<Session>) -> Registration {
        lock(&self.entries).insert(pid, (secret.to_bytes(), Arc::downgrade(session)));
        Registration {
            pid,
            entries: Arc::clone(&self.entries),
        }
    }

    /// Cancel the session's running query if pid and secret match; `true` if they did.
    pub fn cancel(&self, pid: i32, secret: &SecretKey) -> bool {
        let session = {
            let entries = lock(&self.entries);
            entries.get(&pid).and_then(|(key, session)| {
                constant_time_eq(key, &secret.to_bytes()).then(|| session.upgrade())?
            })
        };
        match session {
            Some(s) => {
                tracing::debug!(pid, "cancel request accepted");
                s.cancel();
                true
            }
            None => {
                tracing::debug!(pid, "cancel request for unknown pid or wrong key ignored");
                false
            }
        }
    }
}

#[async_trait]
impl CancelHandler for super::Shared {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.cancels.cancel(request.pid, &request.secret_key);
    }
}
