//! The admin listener (`options { admin "127.0.0.1:2019" }`): what an operator
//! or a monitoring system asks a running bellhop.
//!
//! - `GET /metrics`: every counter and gauge of [`Metrics`], OpenMetrics text;
//! - `GET /health`: `200 ok` while every configured listener accepts, else 503;
//! - `GET /certs`: the certificate table as JSON (`certs::CertTable`), what
//!   `bellhop certs` shows while bellhop runs.
//!
//! It has no authentication, which is why the config only accepts loopback
//! addresses for it. It runs beside the site listeners, on its own socket and
//! accept loop, so a flood on a site port never starves a scrape, and it
//! serves plain HTTP/1.1 with the same header timeout as the sites.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::connection::drive_http1;
use super::reload::Listeners;
use super::Shared;
use crate::body::{text_response, Body};

/// The content type Prometheus asks for when it scrapes OpenMetrics.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of `/certs`.
const JSON: &str = "application/json";

/// Binds the admin address; a failure is a start-up error like any listener's.
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(64)
}

/// The admin listener an upgrade handed over, else [`bind`]'s.
pub(super) fn bind_or_adopt(
    addr: SocketAddr,
    handed: Option<std::net::TcpListener>,
) -> std::io::Result<TcpListener> {
    match handed {
        Some(socket) => TcpListener::from_std(socket),
        None => bind(addr),
    }
}

/// Accepts admin connections until `stop`, serving each on its own task.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    listeners: Arc<Listeners>,
    stop: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let listeners = listeners.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(|req| {
                let response = answer(&req, &shared, &listeners);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = drive_http1(&shared, stream, svc, &stop).await {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}

/// Routes one admin request.
fn answer(req: &Request<Incoming>, shared: &Shared, listeners: &Listeners) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/metrics" => {
            let mut response = Response::new(Body::full(shared.metrics.encode()));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
            response
        }
        "/certs" => certificates(shared),
        "/health" if listeners.all_serving() => text_response(StatusCode::OK, "ok"),
        "/health" => text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not every listener is accepting connections",
        ),
        _ => text_response(
            StatusCode::NOT_FOUND,
            "the admin listener serves /metrics, /health and /certs",
        ),
    }
}

/// `GET /certs`: every managed name (none when no site is served over HTTPS).
fn certificates(shared: &Shared) -> Response<Body> {
    let table = shared
        .https
        .as_ref()
        .map(|https| https.table())
        .unwrap_or_default();
    match serde_json::to_vec_pretty(&table) {
        Ok(mut json) => {
            json.push(b'\n');
            let mut response = Response::new(Body::full(json));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
            response
        }
        Err(e) => text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the certificate table: {e}"),
        ),
    }
}
