//! Routing: strip and check the `/v{version}` prefix, match method and path
//! against the route table (first match wins, as in moby's mux), and turn a
//! handler's `ApiError` into Docker's error response. Every route is served
//! both unversioned and versioned.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::error::ApiError;
use super::query::Query;
use super::request::ApiRequest;
use super::response::{self, Body};
use super::routes;
use super::version::split_version;
use super::Daemon;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + Send>>;
pub type Handler = fn(ApiRequest) -> HandlerFuture;

/// One endpoint: method, path pattern and handler. Patterns are `/`-separated
/// segments: a literal, `{name}` (one segment) or `{name:.*}` (one or more
/// segments, as many as the literals after it leave: image names contain `/`).
pub struct Route {
    pub method: Method,
    pub pattern: &'static str,
    pub handler: Handler,
}

/// `route!(GET "/images/{name:.*}/json" => images::inspect)`
macro_rules! route {
    ($method:ident $pattern:literal => $handler:path) => {
        $crate::server::router::Route {
            method: ::hyper::Method::$method,
            pattern: $pattern,
            handler: |req| Box::pin($handler(req)),
        }
    };
}
pub(crate) use route;

pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new() -> Router {
        Router {
            routes: routes::all(),
        }
    }

    pub async fn handle(&self, daemon: Arc<Daemon>, req: Request<Incoming>) -> Response<Body> {
        let mut resp = match self.dispatch(daemon, req).await {
            Ok(resp) => resp,
            Err(err) => {
                tracing::debug!(%err, "request failed");
                response::error(&err)
            }
        };
        response::add_common_headers(&mut resp);
        resp
    }

    async fn dispatch(
        &self,
        daemon: Arc<Daemon>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let (mut parts, body) = req.into_parts();
        let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        let (version, path) = split_version(parts.uri.path()).map_err(ApiError::bad_request)?;
        let segments = decode_segments(path)?;
        let Some((route, params)) = self.find(&parts.method, &segments) else {
            return Err(ApiError::page_not_found());
        };
        tracing::trace!(method = %parts.method, pattern = route.pattern, "routing");
        let req = ApiRequest {
            daemon,
            method: parts.method,
            version,
            params,
            query: Query::parse(parts.uri.query()),
            headers: parts.headers,
            body,
            upgrade,
        };
        (route.handler)(req).await
    }

    fn find(
        &self,
        method: &Method,
        path: &[String],
    ) -> Option<(&Route, Vec<(&'static str, String)>)> {
        self.routes
            .iter()
            .filter(|r| r.method == *method)
            .find_map(|r| match_pattern(r.pattern, path).map(|p| (r, p)))
    }
}

/// Path segments, percent-decoded (clients escape `:` and `@` in names).
fn decode_segments(path: &str) -> Result<Vec<String>, ApiError> {
    path.split('/')
        .skip(1)
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| ApiError::bad_request("the request path is not valid UTF-8"))
        })
        .collect()
}

fn match_pattern(pattern: &'static str, path: &[String]) -> Option<Vec<(&'static str, String)>> {
    let parts: Vec<&'static str> = pattern.split('/').skip(1).collect();
    let mut params = Vec::new();
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix(":.*}")) {
            let after = parts.len() - i - 1;
            let take = path.len().checked_sub(at + after)?;
            if take == 0 {
                return None;
            }
            params.push((name, path[at..at + take].join("/")));
            at += take;
        } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let segment = path.get(at)?;
            if segment.is_empty() {
                return None;
            }
            params.push((name, segment.clone()));
            at += 1;
        } else if path.get(at)? == part {
            at += 1;
        } else {
            return None;
        }
    }
    (at == path.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        decode_segments(path).expect("valid path")
    }

    #[test]
    fn patterns() {
        assert_eq!(
            match_pattern(
                "/images/{name:.*}/json",
                &segs("/images/library/busybox:1/json")
            ),
            Some(vec![("name", "library/busybox:1".to_owned())])
        );
        assert_eq!(
            match_pattern("/images/{name:.*}/json", &segs("/images/json")),
            None
        );
        assert_eq!(
            match_pattern("/images/{name:.*}", &segs("/images/a/b")),
            Some(vec![("name", "a/b".to_owned())])
        );
        assert_eq!(
            match_pattern("/containers/{id}/json", &segs("/containers/abc/json")),
            Some(vec![("id", "abc".to_owned())])
        );
        assert_eq!(
            match_pattern("/containers/{id}/json", &segs("/containers//json")),
            None
        );
        assert_eq!(match_pattern("/_ping", &segs("/_ping/")), None);
        assert_eq!(
            match_pattern(
                "/images/{name:.*}/tag",
                &segs("/images/localhost%3A5000%2Fa/tag")
            ),
            Some(vec![("name", "localhost:5000/a".to_owned())])
        );
    }

    #[test]
    fn every_pattern_is_well_formed() {
        for route in routes::all() {
            assert!(route.pattern.starts_with('/'), "{}", route.pattern);
            let greedy = route.pattern.matches(":.*}").count();
            assert!(greedy <= 1, "{}", route.pattern);
        }
    }
}
