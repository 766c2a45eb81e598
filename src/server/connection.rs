//! Serves one accepted connection with hyper until it closes or shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::service::{self, ConnContext};
use super::Shared;

/// Runs the HTTP/1.1 server side of one connection (plain TCP or TLS).
///
/// On shutdown the connection is asked to finish its current request and close;
/// an idle keep-alive connection closes at once.
pub async fn serve_http1<I>(stream: I, peer: SocketAddr, port: u16, tls: bool, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = shared.background.shutdown.clone();
    let context = Arc::new(ConnContext {
        shared: shared.clone(),
        peer,
        port,
        tls,
    });
    let svc = service_fn(move |req| {
        let context = context.clone();
        async move { Ok::<_, Infallible>(service::handle(req, &context).await) }
    });
    let conn = shared
        .http1
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Clients that vanish or send garbage end here; hyper already answered
        // what deserved an answer (400, 431, 408).
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
