//! The admin interface: a small HTTP/1.1 server (hyper) for operators and their tools.
//!
//! - `GET /health`: `ok` while the server runs (for load balancers).
//! - `GET /metrics`: Prometheus text: result cache hits, misses, collapsed and bypassed
//!   queries, bytes and entries held; per accelerated dataset its state, version, rows,
//!   bytes and failed refreshes.
//! - `GET /accelerations`: the same per-dataset status as JSON, with the last error.
//! - `POST /cache/flush[?workspace=W[&dataset=D]]`: drop cached results.
//! - `POST /accelerations/refresh?workspace=W&dataset=D`: rebuild a copy now and answer
//!   when it is swapped in (200) or has failed (500; the old copy keeps serving).
//!
//! With `[admin] token` set, POST requests need `Authorization: Bearer <token>`; GETs
//! reveal no data, only counts. Bind it to loopback or a private network.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AdminConfig;
use crate::semantic::Model;

/// The admin listener, bound.
#[derive(Debug)]
pub struct Admin {
    listener: TcpListener,
    token: Option<String>,
}

/// Why the admin interface could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for the admin interface on {addr}: {source}")]
pub struct AdminError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

impl Admin {
    /// Bind the configured address.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(config: &AdminConfig) -> Result<Admin, AdminError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AdminError {
                addr: config.listen,
                source,
            })?;
        Ok(Admin {
            listener,
            token: config.token.clone(),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// The OS error, if the socket has none.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve requests until `stop`.
    pub async fn run(self, shared: Arc<crate::wire::Shared>, stop: CancellationToken) {
        let token = Arc::new(self.token);
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                a = self.listener.accept() => a,
            };
            let Ok((tcp, _)) = accepted else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let (shared, token) = (Arc::clone(&shared), Arc::clone(&token));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (shared, token) = (Arc::clone(&shared), Arc::clone(&token));
                    async move { Ok::<_, Infallible>(handle(req, &shared, token.as_deref()).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service);
                if let Err(e) = conn.await {
                    tracing::debug!(cause = %e, "admin connection ended");
                }
            });
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: String) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    reply(status, "application/json", format!("{value}\n"))
}

fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}

async fn handle(
    req: Request<Incoming>,
    shared: &crate::wire::Shared,
    token: Option<&str>,
) -> Reply {
    let model = &shared.model;
    let query = query_params(req.uri().query().unwrap_or(""));
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if req.method() == Method::POST && !authorized(&req, token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "POST needs Authorization: Bearer <[admin] token>",
        );
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics(model).await,
        ),
        (&Method::GET, "/accelerations") => {
            let all: Vec<_> = model.accelerations.all.iter().map(|a| a.status()).collect();
            json(StatusCode::OK, &serde_json::json!(all))
        }
        (&Method::POST, "/cache/flush") => flush(model, param("workspace"), param("dataset")),
        (&Method::POST, "/accelerations/refresh") => {
            let (Some(ws), Some(d)) = (param("workspace"), param("dataset")) else {
                return error(StatusCode::BAD_REQUEST, "give ?workspace=W&dataset=D");
            };
            let Some(a) = model.accelerations.find(ws, d) else {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("dataset \"{d}\" of workspace \"{ws}\" is not accelerated"),
                );
            };
            match a.refresh().await {
                Ok(status) => json(StatusCode::OK, &serde_json::json!(status)),
                Err(e) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({ "error": e.to_string(), "status": a.status() }),
                ),
            }
        }
        (_, "/health" | "/metrics" | "/accelerations" | "/cache/flush" | "/accelerations/refresh") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this path")
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "unknown path; try /health, /metrics, /accelerations, POST /cache/flush, POST /accelerations/refresh",
        ),
    }
}

fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn flush(model: &Model, workspace: Option<&str>, dataset: Option<&str>) -> Reply {
    let Some(cache) = &model.cache else {
        return error(
            StatusCode::CONFLICT,
            "the result cache is off ([cache] enabled = false)",
        );
    };
    if let Some(ws) = workspace {
        let Some(w) = model.workspace(ws) else {
            return error(StatusCode::NOT_FOUND, &format!("no workspace \"{ws}\""));
        };
        if let Some(d) = dataset {
            if !w.datasets.iter().any(|x| x.name == d) {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("workspace \"{ws}\" has no dataset \"{d}\""),
                );
            }
        }
    } else if dataset.is_some() {
        return error(StatusCode::BAD_REQUEST, "a dataset needs its ?workspace=");
    }
    cache.flush(workspace, dataset);
    json(
        StatusCode::OK,
        &serde_json::json!({ "flushed": { "workspace": workspace, "dataset": dataset } }),
    )
}

/// `a=b&c=d`, percent-decoded.
fn query_params(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Prometheus exposition of the cache and the accelerations.
async fn metrics(model: &Model) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    if let Some(c) = &model.cache {
        c.settle().await;
        let s = &c.stats;
        let n = |a: &std::sync::atomic::AtomicU64| {
            vec![(String::new(), a.load(Ordering::Relaxed) as f64)]
        };
        metric(
            "biproxy_cache_hits_total",
            "counter",
            "Queries answered from the result cache.",
            &n(&s.hits),
        );
        metric(
            "biproxy_cache_misses_total",
            "counter",
            "Cacheable queries that ran.",
            &n(&s.misses),
        );
        metric(
            "biproxy_cache_collapsed_total",
            "counter",
            "Queries that waited for an identical running query instead of running.",
            &n(&s.collapsed),
        );
        metric(
            "biproxy_cache_uncacheable_total",
            "counter",
            "Queries that could not be cached (catalog, volatile functions, cache_ttl = 0).",
            &n(&s.uncacheable),
        );
        metric(
            "biproxy_cache_too_large_total",
            "counter",
            "Results larger than [cache] max_entry_bytes, streamed uncached.",
            &n(&s.too_large),
        );
        metric(
            "biproxy_cache_bytes",
            "gauge",
            "Bytes of results held.",
            &[(String::new(), c.bytes() as f64)],
        );
        metric(
            "biproxy_cache_entries",
            "gauge",
            "Results held.",
            &[(String::new(), c.entries() as f64)],
        );
    }
    let statuses: Vec<_> = model.accelerations.all.iter().map(|a| a.status()).collect();
    if !statuses.is_empty() {
        let per = |f: &dyn Fn(&crate::accel::Status) -> f64| -> Vec<(String, f64)> {
            statuses
                .iter()
                .map(|s| {
                    (
                        format!(
                            "{{workspace=\"{}\",dataset=\"{}\"}}",
                            s.workspace, s.dataset
                        ),
                        f(s),
                    )
                })
                .collect()
        };
        metric(
            "biproxy_acceleration_ready",
            "gauge",
            "1 when a local copy answers the dataset.",
            &per(&|s| f64::from(u8::from(s.version > 0))),
        );
        metric(
            "biproxy_acceleration_version",
            "gauge",
            "Copies built so far.",
            &per(&|s| s.version as f64),
        );
        metric(
            "biproxy_acceleration_rows",
            "gauge",
            "Rows in the copy serving.",
            &per(&|s| s.rows as f64),
        );
        metric(
            "biproxy_acceleration_bytes",
            "gauge",
            "Arrow bytes the copy and its rollups hold.",
            &per(&|s| s.bytes as f64),
        );
        metric(
            "biproxy_acceleration_build_seconds",
            "gauge",
            "How long building the copy serving took.",
            &per(&|s| s.build_seconds),
        );
        metric(
            "biproxy_acceleration_failures_total",
            "counter",
            "Refreshes that failed.",
            &per(&|s| s.failures as f64),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            query_params("workspace=demo&dataset=%E9%94%80+x"),
            vec![
                ("workspace".to_owned(), "demo".to_owned()),
                ("dataset".to_owned(), "销 x".to_owned())
            ]
        );
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
