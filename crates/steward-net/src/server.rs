//! The server loop every listener of steward runs (the gateway, the lease API): HTTP/1.1
//! on an accepted TCP stream, with the request head bounded in size and time. Accept
//! errors back off instead of spinning (running out of file descriptors fails every accept
//! at once), and on shutdown the listener closes and open connections are drained: each
//! finishes its request in flight, up to a deadline.

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// A client must send its whole request head within this (slow loris).
    pub header_read_timeout: Duration,
    /// The largest request head read; a longer one is refused with 431.
    pub max_head: usize,
    /// The most header fields parsed; more are answered 431 (by hyper, without a body).
    /// `None`: hyper's own 100, the only setting that costs nothing per request (any other
    /// makes hyper fill a header array of that size for every request).
    pub max_headers: Option<usize>,
    /// How long connections get to finish on shutdown.
    pub drain: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_read_timeout: Duration::from_secs(10),
            max_head: 64 * 1024,
            max_headers: None,
            drain: Duration::from_secs(5),
        }
    }
}

/// The address a request came from, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

/// Resolves once `shutdown` is true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// The first wait after an accept error; it doubles up to a second while errors go on.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `handle` on `listener` until `shutdown`, then drains.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    options: ServerOptions,
    mut shutdown: watch::Receiver<bool>,
    handle: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut backoff = FIRST_BACKOFF;
    let mut failures: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = FIRST_BACKOFF;
                    accepted
                }
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    failures += 1;
                    // One line per power of two: a storm of them says so without flooding.
                    if failures.is_power_of_two() {
                        tracing::warn!("accept on {:?} failed ({failures} so far): {e}; retrying in {backoff:?}", listener.local_addr().ok());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut shutdown) => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            let response = handle(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout)
            .max_buf_size(options.max_head.max(8192));
        if let Some(n) = options.max_headers {
            builder.max_headers(n);
        }
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(options.drain) => {}
    }
}

/// Errors that concern one connection only (the client left before we accepted it).
fn is_per_connection(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    )
}
