//! One h2 stream: its request through the phases, its answer onto the wire.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{header, HeaderValue, Request, Response};
use http_body::Body as _;

use super::body::H2Body;
use crate::limit::RequestBody;
use crate::server::access_log::LoggedBody;
use crate::server::connection::ConnContext;
use crate::server::date::http_date;
use crate::server::service;

/// Answers one request, then sends the answer's body, as long as the
/// client keeps the stream open: a `RST_STREAM` from the client drops the
/// request where it is (an upstream request in flight is cancelled with
/// it).
pub(super) async fn answer(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    context: Arc<ConnContext>,
) {
    let (parts, recv) = request.into_parts();
    let body = RequestBody::H2(H2Body::new(recv, &parts.headers));
    // Pinned where it is made: the phases' future is large, and each move
    // of it is a copy.
    let handled = pin!(service::handle(
        Box::new(Request::from_parts(parts, body)),
        context
    ));
    let Some(response) = unless_reset(handled, |cx| respond.poll_reset(cx)).await else {
        return;
    };
    let (mut head, body) = response.into_parts();
    fit_for_h2(&mut head.headers, &body);
    let end = body.is_end_stream();
    match respond.send_response(Response::from_parts(head, ()), end) {
        Ok(sender) if !end => send_body(body, sender).await,
        Ok(_) => {}
        Err(e) => {
            // A reset by the client meanwhile, or a head h2 refused.
            tracing::debug!(error = %e, "h2 response head not sent; stream reset");
            respond.send_reset(Reason::INTERNAL_ERROR);
        }
    }
}

/// `work`'s output, or `None` once the client reset the stream
/// (`poll_reset`, the stream's, is looked at only while the work waits: a
/// reset wakes this task).
async fn unless_reset<F: Future, R>(
    mut work: Pin<&mut F>,
    mut poll_reset: impl FnMut(&mut Context<'_>) -> Poll<R>,
) -> Option<F::Output> {
    poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        poll_reset(cx).map(|_| None)
    })
    .await
}

/// What an h2 response head carries besides the service's fields: a `Date`
/// when nothing set one, and the length of a body known in advance, as over
/// HTTP/1.1.
///
/// HTTP/1.1's connection-specific fields, which h2 refuses (RFC 9113
/// §8.2.2), cannot be among them: `header` directives may not set them
/// (config), an upstream's are removed (`proxy::headers`), and the `101`
/// that keeps `Connection` and `Upgrade` answers only an upgrade request,
/// which h2 has none of.
fn fit_for_h2(headers: &mut http::HeaderMap, body: &LoggedBody) {
    // One walk over the few names instead of two hashed lookups.
    let (mut has_date, mut has_length) = (false, false);
    for name in headers.keys() {
        has_date |= name == header::DATE;
        has_length |= name == header::CONTENT_LENGTH;
    }
    if !has_date {
        headers.insert(header::DATE, http_date());
    }
    if !body.is_end_stream() && !has_length {
        if let Some(len) = body.size_hint().exact() {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
}

/// Sends `body` as DATA frames (and trailers), each once the stream may
/// take it: h2 grants capacity while the stream's queued bytes stay under
/// the send buffer (`SEND_BUFFER`), so a client that reads slowly stops the
/// body being read from upstream, as HTTP/1.1's writer does.
async fn send_body(body: LoggedBody, mut sender: SendStream<Bytes>) {
    let mut body = pin!(body);
    loop {
        let next = pin!(poll_fn(|cx| body.as_mut().poll_frame(cx)));
        let Some(next) = unless_reset(next, |cx| sender.poll_reset(cx)).await else {
            tracing::debug!("h2 stream reset by the client mid-body");
            return;
        };
        let frame = match next {
            Some(Ok(frame)) => frame,
            None => {
                // The body ended without saying so before its last frame.
                if let Err(e) = sender.send_data(Bytes::new(), true) {
                    tracing::debug!(error = %e, "h2 body end not sent");
                }
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "h2 response body failed; stream reset");
                sender.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
        };
        // Whether the stream ended with what was sent.
        let sent = match frame.into_data() {
            Ok(data) => {
                let end = body.is_end_stream();
                when_capacity(&mut sender, data.len())
                    .await
                    .and_then(|()| sender.send_data(data, end))
                    .map(|()| end)
            }
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => {
                    sender.reserve_capacity(0);
                    sender.send_trailers(trailers).map(|()| true)
                }
                // A kind of frame h2 has no use for.
                Err(_) => Ok(false),
            },
        };
        match sent {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(error = %e, "h2 response body not sent");
                return;
            }
        }
    }
}

/// Waits until the stream may take more DATA. It asks for one byte only, not
/// `len`: a claim on the connection's window made while waiting would hold
/// it from the connection's other streams (hyper#4003), and h2 raises the
/// claim to what was queued once the frame is sent.
async fn when_capacity(sender: &mut SendStream<Bytes>, len: usize) -> Result<(), h2::Error> {
    if len == 0 {
        return Ok(());
    }
    sender.reserve_capacity(1);
    poll_fn(|cx| loop {
        if sender.capacity() > 0 {
            return Poll::Ready(Ok(()));
        }
        match ready!(sender.poll_capacity(cx)) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Poll::Ready(Err(e)),
            // The stream is no longer open for sending: reset.
            None => return Poll::Ready(Err(h2::Error::from(Reason::CANCEL))),
        }
    })
    .await
}
