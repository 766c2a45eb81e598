//! `error-page`: replaces the body of a 4xx/5xx response with a configured
//! page, whoever produced the response.
//!
//! Pages apply to bellhop's own answers (502 when the upstream is down, 504,
//! 404, 429) *and* to upstream responses with a listed status. The statuses are
//! opt-in per line, so `error-page 502 503 504` in front of a deploy shows the
//! maintenance page whether the app is gone (bellhop's 502) or answering 503
//! itself; an API that must keep its own JSON 404s simply lists no 404, or gets
//! its own route. (Caddy's `handle_errors` covers only Caddy's own errors;
//! nginx's `proxy_intercept_errors` is opt-in: listing the statuses is the opt-in.)
//!
//! File pages are read when the router is built, at start and on every
//! reload, so the request path sends bytes already in memory.

use std::path::PathBuf;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response};

use crate::body::Body;
use crate::config::{ErrorBody, ErrorPage};
use crate::files::mime;

/// A route's error pages, ready to send.
#[derive(Debug, Default)]
pub(crate) struct ErrorPages {
    pages: Box<[Page]>,
}

#[derive(Debug)]
struct Page {
    statuses: Box<[u16]>,
    body: Bytes,
    content_type: HeaderValue,
}

/// An error page file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read error page {}: {source}", path.display())]
pub(crate) struct PageError {
    path: PathBuf,
    source: std::io::Error,
}

/// Headers of the original answer that still tell the client something true
/// about the replaced one (when to retry, how to authenticate, what is allowed).
const KEPT: [header::HeaderName; 4] = [
    header::RETRY_AFTER,
    header::WWW_AUTHENTICATE,
    header::PROXY_AUTHENTICATE,
    header::ALLOW,
];

impl ErrorPages {
    /// Reads every page of `config` (files now, text as it is).
    pub(crate) fn load(config: &[ErrorPage]) -> Result<ErrorPages, PageError> {
        let pages = config
            .iter()
            .map(|page| {
                let (body, content_type) = match &page.body {
                    ErrorBody::File(path) => {
                        let body = std::fs::read(path).map_err(|source| PageError {
                            path: path.clone(),
                            source,
                        })?;
                        let ct = HeaderValue::from_static(mime::content_type(path));
                        (Bytes::from(body), ct)
                    }
                    ErrorBody::Text { text, content_type } => (
                        Bytes::from(text.clone()),
                        content_type
                            .clone()
                            .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8")),
                    ),
                };
                Ok(Page {
                    statuses: page.statuses.clone().into_boxed_slice(),
                    body,
                    content_type,
                })
            })
            .collect::<Result<Vec<_>, PageError>>()?;
        Ok(ErrorPages {
            pages: pages.into_boxed_slice(),
        })
    }

    /// Whether any page is configured (most routes have none).
    pub(crate) fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The response with its body replaced when a page lists its status;
    /// otherwise unchanged. The replaced body (an upstream's, say) is dropped.
    pub(crate) fn apply(&self, response: Response<Body>) -> Response<Body> {
        let status = response.status();
        let Some(page) = self
            .pages
            .iter()
            .find(|p| p.statuses.contains(&status.as_u16()))
        else {
            return response;
        };
        let mut replaced = Response::new(Body::full(page.body.clone()));
        *replaced.status_mut() = status;
        let headers = replaced.headers_mut();
        keep(headers, response.headers());
        headers.insert(header::CONTENT_TYPE, page.content_type.clone());
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        replaced
    }
}

fn keep(to: &mut HeaderMap, from: &HeaderMap) {
    for name in &KEPT {
        for value in from.get_all(name) {
            to.append(name.clone(), value.clone());
        }
    }
}
