//! One request/response exchange on a [`Connection`]: write the encoded head
//! and the body, then read up to the final response head.
//!
//! The body is written whole before the response is read; a backend that
//! answers before it has read the request body gets its answer read after the
//! body went out (as with any HTTP/1.1 client that does not pipeline).
//! How far an exchange got when it failed ([`Stage`]) is what the
//! stale-connection retry in `send.rs` decides on.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::request::Parts;
use http::StatusCode;
use http_body::{Body as _, Frame};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::decode::{self, Delimited, Head};
use super::encode::{self, BodyKind};
use super::{Connection, Error};
use crate::body::Body;
use crate::http1::{ChunkSize, CHUNK_END, LAST_CHUNK};
use crate::proxy::conn::UPSTREAM_HEAD_LIMIT;

/// How far a failed exchange got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum Stage {
    /// Nothing was written and the body is untouched: the request can go
    /// elsewhere as it is.
    Unsent,
    /// Request bytes went out, no response byte came back.
    Unanswered,
    /// Some of the response arrived.
    Answered,
}

/// Why an exchange failed, and how far it got.
#[derive(Debug)]
pub(in crate::proxy) struct Failure {
    pub error: Error,
    pub stage: Stage,
}

impl Failure {
    /// Whether the connection closed or reset before any response byte (not
    /// a malformed response, nor the request body's own failure).
    pub(in crate::proxy) fn died_unanswered(&self) -> bool {
        self.stage != Stage::Answered
            && match &self.error {
                Error::Closed => true,
                Error::Io(e) => matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ),
                _ => false,
            }
    }
}

/// What the request is, as far as reading its response goes.
#[derive(Debug, Clone, Copy)]
pub(in crate::proxy) struct Asked {
    /// A HEAD request: the response has no body whatever it says.
    pub head_request: bool,
    /// An upgrade request: a 101 ends the exchange and hands over the stream.
    pub upgrade: bool,
}

impl Connection {
    /// Encodes the head of `parts` into this connection's buffer, then
    /// keeps its emptied header map for the response head (see
    /// `spare_headers`): nothing reads the request's headers after this.
    pub(in crate::proxy) fn encode(&mut self, parts: &mut Parts, kind: BodyKind) {
        encode::head(parts, kind, &mut self.head);
        self.spare_headers = std::mem::take(&mut parts.headers);
        self.spare_headers.clear();
    }

    /// Sends the encoded head and `body` (delimited as `kind`), then reads
    /// the final response head.
    pub(in crate::proxy) async fn exchange(
        &mut self,
        body: &mut Body,
        kind: BodyKind,
        asked: Asked,
    ) -> Result<(Head, Delimited), Failure> {
        if self.used {
            // A pooled connection whose backend closed it since the check-out.
            let idle = poll_fn(|cx| Poll::Ready(self.poll_idle(cx))).await;
            if let Some(error) = idle {
                self.keep_alive = false;
                return Err(Failure {
                    error,
                    stage: Stage::Unsent,
                });
            }
        }
        self.used = true;
        self.keep_alive = false;
        if let Err(failure) = self.write_request(body, kind).await {
            return self.answer_despite(failure, asked).await;
        }
        let (head, delimited) = self.read_head(asked).await?;
        self.keep_alive = delimited.keep_alive;
        Ok((head, delimited))
    }

    /// After writing the body failed: an upstream that refuses a body (413,
    /// 401) may answer and close before taking all of it, and its answer is
    /// what the client should get. Anything else keeps `failure`; the
    /// connection is not reused either way.
    async fn answer_despite(
        &mut self,
        failure: Failure,
        asked: Asked,
    ) -> Result<(Head, Delimited), Failure> {
        if failure.stage == Stage::Unsent || !matches!(failure.error, Error::Io(_)) {
            return Err(failure);
        }
        match self.read_head(asked).await {
            Ok((head, delimited)) => Ok((head, delimited)),
            Err(_) => Err(failure),
        }
    }

    /// Writes the head, with the first body bytes when they are at hand, then
    /// the rest of the body.
    async fn write_request(&mut self, body: &mut Body, kind: BodyKind) -> Result<(), Failure> {
        let unsent = |error| Failure {
            error: Error::Io(error),
            stage: Stage::Unsent,
        };
        if kind == BodyKind::Empty {
            return self.stream.write_all(&self.head).await.map_err(unsent);
        }
        let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
        // The head still to write: with the first piece when it is at hand,
        // else alone before waiting for it.
        let mut head: &[u8] = &self.head;
        let first = match first {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                self.stream.write_all(head).await.map_err(unsent)?;
                head = &[];
                next_frame(body).await
            }
        };
        let unanswered = |error| Failure {
            error,
            stage: Stage::Unanswered,
        };
        let mut frame = first;
        loop {
            match frame {
                None => break,
                Some(Err(e)) => return Err(unanswered(Error::Body(e))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        write_data(&mut self.stream, head, data, kind)
                            .await
                            .map_err(|e| unanswered(Error::Io(e)))?;
                        head = &[];
                    }
                }
            }
            frame = next_frame(body).await;
        }
        let end: &[u8] = if kind == BodyKind::Chunked {
            LAST_CHUNK
        } else {
            &[]
        };
        write_all(
            &mut self.stream,
            &mut [IoSlice::new(head), IoSlice::new(end)],
        )
        .await
        .map_err(|e| unanswered(Error::Io(e)))
    }

    /// Reads until the final response head: 100, 102 and 103 are skipped, a
    /// 101 is final for an upgrade request (and an error otherwise).
    async fn read_head(&mut self, asked: Asked) -> Result<(Head, Delimited), Failure> {
        let mut stage = Stage::Unanswered;
        loop {
            let fail = move |error| Failure { error, stage };
            if let Some(mut head) =
                decode::parse_head(&mut self.read, &mut self.spare_headers, &mut self.spans)
                    .map_err(fail)?
            {
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    if !asked.upgrade {
                        return Err(fail(Error::Malformed("101 to a request without upgrade")));
                    }
                    let delimited = Delimited {
                        framing: crate::http1::Framing::Empty,
                        keep_alive: false,
                    };
                    return Ok((head, delimited));
                }
                if head.status.is_informational() {
                    continue;
                }
                let delimited = decode::delimit(&mut head, asked.head_request).map_err(fail)?;
                return Ok((head, delimited));
            }
            if self.read.len() >= UPSTREAM_HEAD_LIMIT {
                return Err(fail(Error::HeadTooLarge));
            }
            match poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) if stage == Stage::Unanswered => return Err(fail(Error::Closed)),
                Ok(0) => return Err(fail(Error::Incomplete)),
                Ok(_) => stage = Stage::Answered,
                Err(e) => return Err(fail(Error::Io(e))),
            }
        }
    }
}

type NextFrame = Option<Result<Frame<Bytes>, crate::body::BodyError>>;

/// The next frame of the request body.
async fn next_frame(body: &mut Body) -> NextFrame {
    poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
}

/// Writes `head` (possibly empty) and one piece of body data, framed as
/// `kind` says, in one vectored write where the socket takes it.
async fn write_data(
    stream: &mut (impl AsyncWrite + Unpin),
    head: &[u8],
    data: Bytes,
    kind: BodyKind,
) -> io::Result<()> {
    if data.is_empty() {
        return write_all(stream, &mut [IoSlice::new(head)]).await;
    }
    if kind == BodyKind::Chunked {
        let size = ChunkSize::new(data.len());
        let mut slices = [
            IoSlice::new(head),
            IoSlice::new(size.as_bytes()),
            IoSlice::new(&data),
            IoSlice::new(CHUNK_END),
        ];
        write_all(stream, &mut slices).await
    } else {
        write_all(stream, &mut [IoSlice::new(head), IoSlice::new(&data)]).await
    }
}

/// Writes every slice, with as few `writev` calls as the socket allows.
async fn write_all(
    stream: &mut (impl AsyncWrite + Unpin),
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = stream.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}
