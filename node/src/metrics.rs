//! The Prometheus endpoint: `GET /metrics` on the metrics port, in the text exposition format.
//! Raft series come from `raft::RaftMetrics`; the server series here mirror INFO's fields.
//!
//! The HTTP side is deliberately tiny (one request per connection, bounded request size and
//! time): a scraper needs nothing more, and the port is not for clients.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::server::Server;

/// Largest request head a scraper may send.
const MAX_REQUEST: usize = 8 * 1024;

/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Server-wide series, refreshed from the server's counters when scraped.
pub struct ServerSeries {
    connected_clients: IntGauge,
    keys: IntGauge,
    expiring_keys: IntGauge,
    uptime_seconds: IntGauge,
    commands: IntCounter,
    errors: IntCounter,
    net_input_bytes: IntCounter,
    net_output_bytes: IntCounter,
}

impl ServerSeries {
    /// Creates the series and adds them to `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<ServerSeries> {
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let gauge = IntGauge::new(name, help)?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let counter = IntCounter::new(name, help)?;
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        Ok(ServerSeries {
            connected_clients: gauge("autocache_connected_clients", "Client connections open.")?,
            keys: gauge(
                "autocache_keys",
                "Keys held by this node, in every group it replicates.",
            )?,
            expiring_keys: gauge("autocache_expiring_keys", "Keys with a deadline.")?,
            uptime_seconds: gauge(
                "autocache_uptime_seconds",
                "Seconds since the server started.",
            )?,
            commands: counter("autocache_commands_processed_total", "Commands run.")?,
            errors: counter("autocache_error_replies_total", "Error replies sent.")?,
            net_input_bytes: counter(
                "autocache_net_input_bytes_total",
                "Bytes read from clients.",
            )?,
            net_output_bytes: counter(
                "autocache_net_output_bytes_total",
                "Bytes written to clients.",
            )?,
        })
    }

    fn refresh(&self, server: &Server) {
        let stats = &server.stats;
        self.connected_clients.set(server.clients.len() as i64);
        let (keys, expiring) = server.db.key_counts();
        self.keys.set(keys as i64);
        self.expiring_keys.set(expiring as i64);
        self.uptime_seconds
            .set(server.started.elapsed().as_secs() as i64);
        // Counters only move forward: add what the server counted since the last scrape.
        for (counter, total) in [
            (&self.commands, &stats.total_commands),
            (&self.errors, &stats.total_errors),
            (&self.net_input_bytes, &stats.net_input_bytes),
            (&self.net_output_bytes, &stats.net_output_bytes),
        ] {
            let total = total.load(Ordering::Relaxed);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }
}

/// Every series, in the text exposition format.
pub fn render(server: &Server) -> Vec<u8> {
    server.groups.refresh_metrics();
    server.series.refresh(server);
    let mut out = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&server.registry.gather(), &mut out) {
        tracing::warn!(%error, "encoding metrics failed");
    }
    out
}

/// Answers scrapes on `listener` until the task is aborted (at shutdown).
pub async fn serve(server: Arc<Server>, listener: TcpListener) {
    let mut scrapes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let server = server.clone();
                    scrapes.spawn(async move {
                        if let Err(error) = answer(&server, socket).await {
                            tracing::debug!(%error, "metrics request failed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = scrapes.join_next(), if !scrapes.is_empty() => {}
        }
    }
}

async fn answer(server: &Server, mut socket: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() >= MAX_REQUEST {
                return Err(std::io::Error::other("request head too large"));
            }
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    })
    .await;
    read.map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", render(server)),
        (Some(b"GET"), _) => ("404 Not Found", b"try /metrics\n".to_vec()),
        _ => ("405 Method Not Allowed", b"only GET\n".to_vec()),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(header.as_bytes()).await?;
    socket.write_all(&body).await?;
    socket.shutdown().await
}
