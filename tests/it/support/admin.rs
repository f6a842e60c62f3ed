//! A minimal HTTP/1.1 client for the admin interface (one request per connection).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Status code and body of `method path` on the admin interface.
pub(crate) async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    request_with(addr, method, path, "").await
}

/// As [`request`], with extra header lines (each ending in `\r\n`).
pub(crate) async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the admin interface");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: biproxy\r\nConnection: close\r\nContent-Length: 0\r\n{headers}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of an unlabelled Prometheus sample (0 when absent).
pub(crate) async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (status, body) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Wait until every accelerated dataset has a copy ready (at least `version`), or panic
/// after 60 s with the last status.
pub(crate) async fn wait_ready(addr: SocketAddr, version: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, body) = request(addr, "GET", "/accelerations").await;
        let status: serde_json::Value = serde_json::from_str(&body).expect("JSON status");
        let ready = status
            .as_array()
            .is_some_and(|all| all.iter().all(|s| s["version"].as_u64() >= Some(version)));
        if ready {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "accelerations not ready: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
