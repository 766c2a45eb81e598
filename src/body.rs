//! The one body type that flows through bellhop in both directions.
//!
//! An enum instead of a boxed trait object: a proxied body is passed through
//! frame by frame as it arrives (no copy, no buffering, backpressure intact;
//! a client's held to its limits by [`ClientBody`]), a
//! body bellhop writes itself is a single `Bytes`, and a static file is read in
//! chunks as the client takes them. Only a compressed body is boxed: it wraps
//! another body plus the compressor's state.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::encode::EncodedBody;
use crate::files::FileBody;
use crate::limit::{ClientBody, ClientBodyError};
use crate::proxy::UpstreamBody;

/// A request or response body: streamed from a peer, a fixed buffer, a file, or
/// one of those compressed.
#[derive(Debug)]
pub(crate) enum Body {
    /// Streamed from the client, frame by frame, within `max-body` and
    /// `client-body-timeout`.
    Client(ClientBody),
    /// Streamed from an upstream, frame by frame; it also drives the upstream
    /// connection and returns it to the pool at the end.
    Upstream(UpstreamBody),
    /// A complete body bellhop produced itself; `None` once it has been sent.
    Full(Option<Bytes>),
    /// A static file (or a range of it), read chunk by chunk.
    File(FileBody),
    /// Another body, compressed as it streams (`encode`).
    Encoded(Box<EncodedBody>),
}

/// Why a body stopped early: a peer's stream, reading a file or compressing
/// failed, or the client's body broke its limits.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// Reading a file or compressing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The client's request body broke a limit, was malformed or ended early.
    #[error(transparent)]
    Client(#[from] ClientBodyError),
}

impl Body {
    /// A body with no bytes.
    pub(crate) fn empty() -> Self {
        Body::Full(None)
    }

    /// A fixed body, e.g. an error page.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::empty()
        } else {
            Body::Full(Some(bytes))
        }
    }
}

impl Body {
    /// The client stopped taking this body for now: buffers it can do
    /// without until it is polled again go (an upstream's read buffer).
    pub(crate) fn shed(&mut self) {
        match self {
            Body::Upstream(upstream) => upstream.shed(),
            // The compressor holds its own state either way.
            Body::Client(_) | Body::Full(_) | Body::File(_) | Body::Encoded(_) => {}
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Client(client) => Pin::new(client)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BodyError::from))),
            Body::Upstream(upstream) => Pin::new(upstream)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BodyError::from))),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::File(file) => file
                .poll_chunk(cx)
                .map(|c| c.map(|r| r.map(Frame::data).map_err(BodyError::from))),
            Body::Encoded(encoded) => encoded
                .poll_chunk(cx)
                .map(|c| c.map(|r| r.map(Frame::data).map_err(BodyError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Client(client) => client.is_end_stream(),
            Body::Upstream(upstream) => upstream.is_end_stream(),
            Body::Full(bytes) => bytes.is_none(),
            Body::File(file) => file.is_end_stream(),
            Body::Encoded(encoded) => encoded.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Client(client) => client.size_hint(),
            Body::Upstream(upstream) => upstream.size_hint(),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::File(file) => SizeHint::with_exact(file.remaining()),
            // The compressed length is known only at the end.
            Body::Encoded(_) => SizeHint::default(),
        }
    }
}

/// A short plain-text response such as `502 Bad Gateway: the upstream did not answer`.
pub(crate) fn text_response(status: http::StatusCode, text: &str) -> http::Response<Body> {
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!("{} {reason}: {text}\n", status.as_u16());
    let mut response = http::Response::new(Body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
