//! A route's path change, applied after admission and before its handler:
//! `strip-prefix=#true` and `rewrite="…"` (config/rewrite.rs reads both).
//!
//! Runs on the normalized path the route matched, and the targets are in the
//! same normal form, so the result needs no second normalization; the query is
//! kept as the client sent it.

use http::{HeaderValue, Request};

use crate::config::{PathPattern, Route};
use crate::http_path;
use crate::proxy::ForwardedPrefix;

/// What a route does to the path before its handler sees it.
#[derive(Debug)]
pub(crate) struct PathRewrite {
    /// The matched prefix that is replaced (`/api` for `"/api/*"`); empty for
    /// `"/*"`. Unused when `keep_rest` is false.
    from: Box<str>,
    /// What replaces it (`/v2`, or empty to strip), or the whole new path.
    to: Box<str>,
    /// A prefix swap (`/old/a` → `/new/a`) rather than one path for every match.
    keep_rest: bool,
    /// `strip-prefix` tells the upstream what it took off.
    forwarded_prefix: Option<HeaderValue>,
}

/// A route's path change cannot be built (the config checks prevent it).
#[derive(Debug, thiserror::Error)]
#[error("`strip-prefix` and `rewrite=\"/prefix/*\"` need a \"/prefix/*\" route")]
pub(crate) struct NoPrefix;

impl PathRewrite {
    /// The route's path change, if it has one.
    pub(crate) fn of(route: &Route) -> Result<Option<PathRewrite>, NoPrefix> {
        let from = match &route.path {
            PathPattern::Prefix(prefix) => Some(prefix.as_str()),
            _ => None,
        };
        if route.strip_prefix {
            let from = from.filter(|p| !p.is_empty()).ok_or(NoPrefix)?;
            return Ok(Some(PathRewrite {
                from: from.into(),
                to: "".into(),
                keep_rest: true,
                forwarded_prefix: Some(HeaderValue::from_str(from).map_err(|_| NoPrefix)?),
            }));
        }
        Ok(match &route.rewrite {
            None | Some(PathPattern::Any) => None,
            Some(PathPattern::Exact(path)) => Some(PathRewrite {
                from: "".into(),
                to: path.as_str().into(),
                keep_rest: false,
                forwarded_prefix: None,
            }),
            Some(PathPattern::Prefix(to)) => Some(PathRewrite {
                from: from.ok_or(NoPrefix)?.into(),
                to: to.as_str().into(),
                keep_rest: true,
                forwarded_prefix: None,
            }),
        })
    }

    /// Changes the request's path (`/api/users?x` → `/users?x` when stripping
    /// `/api`; an empty result is `/`), and marks the request for
    /// `X-Forwarded-Prefix` when stripping.
    pub(crate) fn apply<B>(&self, req: &mut Request<B>) {
        let path = if self.keep_rest {
            let rest = req.uri().path().strip_prefix(&*self.from).unwrap_or("");
            let mut path = String::with_capacity(self.to.len() + rest.len() + 1);
            path.push_str(&self.to);
            path.push_str(rest);
            if path.is_empty() {
                path.push('/');
            }
            path
        } else {
            self.to.to_string()
        };
        if let Some(uri) = http_path::with_path(req.uri(), &path) {
            *req.uri_mut() = uri;
        }
        if let Some(prefix) = &self.forwarded_prefix {
            req.extensions_mut().insert(ForwardedPrefix(prefix.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Handler;

    fn rewritten(
        pattern: PathPattern,
        strip: bool,
        rewrite: Option<PathPattern>,
        uri: &str,
    ) -> String {
        let mut route = Route::new(
            pattern,
            Handler::Respond {
                status: 200,
                body: String::new(),
                content_type: None,
            },
        );
        route.strip_prefix = strip;
        route.rewrite = rewrite;
        let mut req = Request::get(uri).body(()).unwrap();
        PathRewrite::of(&route).unwrap().unwrap().apply(&mut req);
        req.uri().to_string()
    }

    fn prefix(p: &str) -> PathPattern {
        PathPattern::Prefix(p.into())
    }

    #[test]
    fn prefix_swaps_keep_the_rest_and_the_query() {
        let to_new = Some(prefix("/new"));
        assert_eq!(
            rewritten(prefix("/old"), false, to_new.clone(), "/old/a/b?q=1"),
            "/new/a/b?q=1"
        );
        assert_eq!(
            rewritten(prefix("/old"), false, to_new.clone(), "/old"),
            "/new"
        );
        assert_eq!(rewritten(prefix("/old"), false, to_new, "/old/"), "/new/");
        // "/*" as target strips without X-Forwarded-Prefix; "/*" as route prepends.
        assert_eq!(
            rewritten(prefix("/api"), false, Some(prefix("")), "/api/x"),
            "/x"
        );
        assert_eq!(
            rewritten(prefix("/api"), false, Some(prefix("")), "/api"),
            "/"
        );
        assert_eq!(
            rewritten(prefix(""), false, Some(prefix("/v2")), "/x?y"),
            "/v2/x?y"
        );
    }

    #[test]
    fn an_exact_target_replaces_every_matched_path() {
        let to = Some(PathPattern::Exact("/index.html".into()));
        assert_eq!(
            rewritten(prefix("/app"), false, to.clone(), "/app/deep/link?x=1"),
            "/index.html?x=1"
        );
        assert_eq!(
            rewritten(PathPattern::Exact("/about".into()), false, to, "/about"),
            "/index.html"
        );
    }

    #[test]
    fn strip_prefix_marks_the_forwarded_prefix() {
        assert_eq!(
            rewritten(prefix("/api"), true, None, "/api/users?x=1"),
            "/users?x=1"
        );
        assert_eq!(rewritten(prefix("/api"), true, None, "/api"), "/");
        let mut route = Route::new(
            prefix("/api"),
            Handler::Respond {
                status: 200,
                body: String::new(),
                content_type: None,
            },
        );
        route.strip_prefix = true;
        let mut req = Request::get("/api/x").body(()).unwrap();
        PathRewrite::of(&route).unwrap().unwrap().apply(&mut req);
        let ForwardedPrefix(p) = req.extensions().get::<ForwardedPrefix>().unwrap();
        assert_eq!(p, "/api");
    }
}
