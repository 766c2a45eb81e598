//! The `files` handler: static files from a directory.
//!
//! GET and HEAD only. The request path, percent-decoded, is looked up under the
//! root (the route's prefix is not stripped: `/css/a.css` is `<root>/css/a.css`).
//! Nothing outside the root is ever served: `..` in any spelling is refused
//! before the file system is asked ([`path`]), and the resolved path (symlinks
//! followed) must still lie under the resolved root. A directory redirects to
//! its slash form, then serves its `index.html`. Responses carry validators and
//! honour `If-None-Match`, `If-Modified-Since` and single `Range`s; the body is
//! read in chunks as the client takes it ([`FileBody`]).
//!
//! With `try="/index.html"` a path that names nothing is answered with that
//! file instead of a 404 (any miss, as Caddy's `try_files {path} /index.html`:
//! a single-page app routes in the browser). Precompressed `.zst`/`.gz`
//! siblings are sent when the client accepts them ([`precompressed`]).

mod conditional;
pub(crate) mod mime;
mod path;
mod precompressed;
mod range;
mod stream;

use std::io;
use std::path::{Path, PathBuf};

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};

use crate::body::{text_response, Body};
use crate::config::Encoding;
use crate::encode;
use conditional::Validators;
use range::RangeReply;
pub(crate) use stream::FileBody;

/// A configured `files` root.
///
/// The root is resolved again for every request, not once at start: a deploy
/// that swaps a `current -> releases/N` symlink is served at once, and a root
/// created after start works.
#[derive(Debug)]
pub(crate) struct Files {
    root: PathBuf,
    /// `try="/index.html"`: the request path served when nothing matches.
    fallback: Option<Box<str>>,
    /// The route compresses (`encode`): whole files are marked with their
    /// [`encode::Source`] so their compressed form can be kept. Off, the mark
    /// would only cost an allocation per response.
    mark_source: bool,
}

/// A regular file found under the root, open.
struct Found {
    /// The file asked for: its extension gives the Content-Type.
    path: PathBuf,
    /// What is sent: the file itself, or its precompressed sibling.
    file: std::fs::File,
    meta: std::fs::Metadata,
    /// The sibling's coding, when one is sent.
    coding: Option<Encoding>,
    /// The answer depends on Accept-Encoding (a sibling exists).
    vary: bool,
}

/// Why a request path does not lead to a file.
enum Miss {
    /// Nothing servable there (or outside the root): 404.
    NotFound,
    /// A directory asked for without its trailing slash: 308 to the slash form.
    AddSlash,
    /// The file system refused (permissions): 403.
    Forbidden,
    /// Anything else the file system said: 500, logged.
    Io(io::Error),
}

impl From<io::Error> for Miss {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Miss::NotFound,
            io::ErrorKind::PermissionDenied => Miss::Forbidden,
            _ => Miss::Io(e),
        }
    }
}

impl Files {
    /// A handler for `root`; `mark_source` when the route has `encode`.
    pub(crate) fn new(root: &Path, fallback: Option<&str>, mark_source: bool) -> Self {
        Files {
            root: root.to_path_buf(),
            fallback: fallback.map(Into::into),
            mark_source,
        }
    }

    /// Answers one request. Never fails: problems become 4xx/5xx.
    pub(crate) async fn serve(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "static files answer GET and HEAD only",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let accept = headers.get(header::ACCEPT_ENCODING);
        let mut found = self.resolve(uri.path(), accept).await;
        if let (Err(Miss::NotFound), Some(fallback)) = (&found, &self.fallback) {
            found = self.resolve(fallback, accept).await;
        }
        let found = match found {
            Ok(found) => found,
            Err(Miss::NotFound) => return not_found(),
            Err(Miss::AddSlash) => return add_slash(uri),
            Err(Miss::Forbidden) => return forbidden(),
            Err(Miss::Io(e)) => return io_error(&self.root, uri, &e),
        };
        send_file(found, method, headers, self.mark_source)
    }

    /// The regular file a request path names, inside the root, opened. The
    /// file-system calls are blocking ones, made in one trip to tokio's blocking pool.
    async fn resolve(
        &self,
        request_path: &str,
        accept: Option<&HeaderValue>,
    ) -> Result<Found, Miss> {
        let relative = path::relative(request_path).ok_or(Miss::NotFound)?;
        let root = self.root.clone();
        let dir_form = request_path.ends_with('/');
        let accept = accept.cloned();
        tokio::task::spawn_blocking(move || {
            resolve_blocking(&root, &relative, dir_form, accept.as_ref())
        })
        .await
        .map_err(|e| Miss::Io(io::Error::other(e)))?
    }
}

/// See [`Files::resolve`]: resolves root and path (symlinks followed), checks
/// that the path is still under the root, picks `index.html` for directories,
/// and opens the file or the precompressed sibling the client accepts.
fn resolve_blocking(
    root: &Path,
    relative: &Path,
    dir_form: bool,
    accept: Option<&HeaderValue>,
) -> Result<Found, Miss> {
    let root = std::fs::canonicalize(root)?;
    let inside = |path: &Path| -> Result<PathBuf, Miss> {
        let resolved = std::fs::canonicalize(path)?;
        if resolved.starts_with(&root) {
            Ok(resolved)
        } else {
            Err(Miss::NotFound)
        }
    };
    let mut path = inside(&root.join(relative))?;
    let meta = std::fs::metadata(&path)?;
    if meta.is_dir() {
        if !dir_form {
            return Err(Miss::AddSlash);
        }
        path = inside(&path.join("index.html"))?;
        if !std::fs::metadata(&path)?.is_file() {
            return Err(Miss::NotFound);
        }
    } else if !meta.is_file() {
        // FIFOs, sockets and devices are never served (opening a FIFO blocks).
        return Err(Miss::NotFound);
    }
    let choice = precompressed::choose(&root, &path, accept);
    let (file, coding) = match choice.sibling {
        Some((sibling, coding)) => (std::fs::File::open(sibling)?, Some(coding)),
        None => (std::fs::File::open(&path)?, None),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Miss::NotFound);
    }
    Ok(Found {
        path,
        file,
        meta,
        coding,
        vary: choice.vary,
    })
}

/// The 200, 206, 304 or 416 for this request of an open file; a whole 200 of
/// the plain file carries its [`encode::Source`] when `mark_source`.
fn send_file(
    found: Found,
    method: &Method,
    headers: &HeaderMap,
    mark_source: bool,
) -> Response<Body> {
    let Found {
        path,
        file,
        meta,
        coding,
        vary,
    } = found;
    let len = meta.len();
    let mut validators = Validators::new(len, meta.modified().ok());
    if let Some(coding) = coding {
        validators = validators.encoded(coding.token());
    }

    let mut response = Response::new(Body::empty());
    let h = response.headers_mut();
    if vary {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if let Some(coding) = coding {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
    }
    h.insert(header::ETAG, validators.etag());
    if let Some(lm) = validators.last_modified() {
        h.insert(header::LAST_MODIFIED, lm);
    }
    if validators.not_modified(headers) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(mime::content_type(&path)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) if method == Method::GET && validators.range_allowed(headers) => {
            range::parse(value, len)
        }
        _ => RangeReply::Full,
    };
    let (start, count) = match range {
        RangeReply::Full => (0, len),
        RangeReply::Partial { start, end } => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{end}/{len}")),
            );
            (start, end - start + 1)
        }
        RangeReply::Unsatisfiable => {
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{len}")),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
            return response;
        }
    };
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::GET && count > 0 {
        *response.body_mut() = Body::File(FileBody::new(file, start, count));
    }
    if mark_source && coding.is_none() && response.status() == StatusCode::OK {
        // A whole plain file: `encode` may keep its compressed form.
        response.extensions_mut().insert(encode::Source {
            path,
            len,
            modified: meta.modified().ok(),
        });
    }
    response
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

fn not_found() -> Response<Body> {
    text_response(StatusCode::NOT_FOUND, "no such file")
}

fn forbidden() -> Response<Body> {
    text_response(StatusCode::FORBIDDEN, "this file may not be read")
}

fn io_error(root: &Path, uri: &Uri, e: &io::Error) -> Response<Body> {
    tracing::warn!(root = %root.display(), path = uri.path(), error = %e, "files: cannot read");
    text_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the file could not be read",
    )
}

/// `/dir` → 308 `/dir/` (query kept), so relative links in its index.html work.
fn add_slash(uri: &Uri) -> Response<Body> {
    let target = match uri.query() {
        Some(q) => format!("{}/?{q}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    match HeaderValue::from_str(&target) {
        Ok(location) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => not_found(),
    }
}
