//! The agent gadget's page, served on the gRPC listener: `GET /gadget/` is the page, `GET /gadget/<file>` its
//! script and style sheet, and `GET /` redirects to `/gadget/`. The files are the committed bundle of `web/dist/`,
//! embedded in the binary, so the service needs no files on disk and no Node to build.
//!
//! tonic-web answers every HTTP/1.1 request that is not gRPC-web with 400, so the page cannot be a route of the
//! gRPC router: [`GadgetLayer`] sits outside the gRPC-web translation and the guard, answers the gadget's paths
//! itself and passes every other request on untouched.

use std::{
    fmt::Write as _,
    future::{Ready, ready},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use anyhow::bail;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use sha2::{Digest as _, Sha256};
use tower::{Layer, Service};

/// Where the gadget lives.
pub const GADGET_PATH: &str = "/gadget/";

/// The frame-ancestors of `--gadget-frame-ancestors` when none are given: only pages of this origin may frame the
/// gadget.
pub const DEFAULT_FRAME_ANCESTORS: &str = "'self'";

/// The page (`web/index.html`, written by hand) and the bundle built into `web/dist/`: (file name, content type,
/// bytes). `index.html` is served at `/gadget/`.
const FILES: [(&str, &str, &[u8]); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../web/index.html"),
    ),
    (
        "gadget.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/dist/gadget.js"),
    ),
    (
        "gadget.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/dist/gadget.css"),
    ),
];

/// Browsers revalidate every file (cheap: an unchanged file is a 304 by its ETag), so a new bundle is picked up at
/// the next load after an upgrade.
const CACHE_CONTROL: &str = "no-cache";
/// What the gadget's paths answer to anything but GET and HEAD.
const ALLOW: &str = "GET, HEAD";

/// One embedded file, ready to answer with.
#[derive(Debug)]
struct Asset {
    name: &'static str,
    content_type: HeaderValue,
    etag: HeaderValue,
    body: Bytes,
}

/// The embedded files and the headers every answer carries.
#[derive(Debug)]
struct Site {
    assets: Vec<Asset>,
    content_security_policy: HeaderValue,
}

/// The tower layer serving the gadget; see the module documentation.
#[derive(Clone, Debug)]
pub struct GadgetLayer {
    site: Arc<Site>,
}

impl GadgetLayer {
    /// The gadget with `frame_ancestors` (the value of `--gadget-frame-ancestors`: origins separated by spaces or
    /// commas, or `'self'`, `'none'`) as its Content-Security-Policy's `frame-ancestors`.
    pub fn new(frame_ancestors: &str) -> anyhow::Result<Self> {
        let ancestors = parse_frame_ancestors(frame_ancestors)?;
        let policy = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
        );
        let assets = FILES
            .iter()
            .map(|&(name, content_type, body)| Asset {
                name,
                content_type: HeaderValue::from_static(content_type),
                etag: etag(body),
                body: Bytes::from_static(body),
            })
            .collect();
        Ok(GadgetLayer {
            site: Arc::new(Site {
                assets,
                content_security_policy: HeaderValue::from_str(&policy)?,
            }),
        })
    }
}

impl<S> Layer<S> for GadgetLayer {
    type Service = Gadget<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gadget {
            inner,
            site: self.site.clone(),
        }
    }
}

/// Answers the gadget's paths, passes the rest to `inner`.
#[derive(Clone, Debug)]
pub struct Gadget<S> {
    inner: S,
    site: Arc<Site>,
}

impl<S, B> Service<Request<B>> for Gadget<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = GadgetFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.site.answer(&request) {
            Some(response) => GadgetFuture::Page {
                response: ready(Ok(response)),
            },
            None => GadgetFuture::Inner {
                future: self.inner.call(request),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Gadget`]: a page answered at once, or the inner service's call.
    #[project = GadgetFutureProjection]
    pub enum GadgetFuture<F, E> {
        Page { response: Ready<Result<Response<tonic::body::Body>, E>> },
        Inner { #[pin] future: F },
    }
}

impl<F, E> Future for GadgetFuture<F, E>
where
    F: Future<Output = Result<Response<tonic::body::Body>, E>>,
{
    type Output = Result<Response<tonic::body::Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GadgetFutureProjection::Page { response } => Pin::new(response).poll(cx),
            GadgetFutureProjection::Inner { future } => future.poll(cx),
        }
    }
}

impl Site {
    /// The answer to a request for one of the gadget's paths; None for every other path.
    fn answer<B>(&self, request: &Request<B>) -> Option<Response<tonic::body::Body>> {
        let path = request.uri().path();
        let file = match path {
            "/" | "/gadget" => None,
            _ => Some(path.strip_prefix(GADGET_PATH)?),
        };
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            let mut response = self.plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return Some(response);
        }
        let Some(file) = file else {
            return Some(self.redirect());
        };
        let name = if file.is_empty() { "index.html" } else { file };
        let Some(asset) = self.assets.iter().find(|asset| asset.name == name) else {
            return Some(self.plain(StatusCode::NOT_FOUND, "not found\n"));
        };
        let unchanged = request
            .headers()
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .any(|value| etag_matches(value, &asset.etag));
        let (status, body) = if unchanged {
            (StatusCode::NOT_MODIFIED, None)
        } else if method == Method::HEAD {
            (StatusCode::OK, None)
        } else {
            (StatusCode::OK, Some(asset.body.clone()))
        };
        let mut response = self.response(status, body);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, asset.content_type.clone());
        headers.insert(header::ETAG, asset.etag.clone());
        if status == StatusCode::OK {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
        }
        Some(response)
    }

    /// `/` and `/gadget` lead to `/gadget/`.
    fn redirect(&self) -> Response<tonic::body::Body> {
        let mut response = self.response(StatusCode::TEMPORARY_REDIRECT, None);
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static(GADGET_PATH));
        response
    }

    /// A short plain-text answer (errors).
    fn plain(&self, status: StatusCode, text: &'static str) -> Response<tonic::body::Body> {
        let mut response = self.response(status, Some(Bytes::from_static(text.as_bytes())));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
        response
    }

    /// An answer with the headers every answer of the gadget carries.
    fn response(&self, status: StatusCode, body: Option<Bytes>) -> Response<tonic::body::Body> {
        let body = match body {
            Some(bytes) => tonic::body::Body::new(Full::new(bytes)),
            None => tonic::body::Body::empty(),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            self.content_security_policy.clone(),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        );
        response
    }
}

/// A strong ETag from the file's SHA-256.
fn etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &digest[..16] {
        let _ = write!(tag, "{byte:02x}");
    }
    tag.push('"');
    HeaderValue::from_str(&tag).expect("hex digits are a valid header value")
}

/// Whether an `If-None-Match` value (`*`, or a list of tags, weak or strong) names `etag`.
fn etag_matches(value: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// The CSP `frame-ancestors` sources of `--gadget-frame-ancestors`: separated by spaces or commas, each `'self'`,
/// `'none'` (alone), `*`, a scheme (`https:`) or an origin such as `https://desktop.example.com` or
/// `https://*.example.com:8443`. Empty means the default, `'self'`.
pub fn parse_frame_ancestors(value: &str) -> anyhow::Result<String> {
    let sources: Vec<&str> = value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|source| !source.is_empty())
        .collect();
    if sources.is_empty() {
        return Ok(DEFAULT_FRAME_ANCESTORS.to_owned());
    }
    for source in &sources {
        let keyword = matches!(*source, "'self'" | "'none'" | "*");
        if !keyword && !is_host_source(source) {
            bail!(
                "--gadget-frame-ancestors: {source:?} is not a frame ancestor: give origins such as \
                 https://desktop.example.com, or 'self' or 'none'"
            );
        }
    }
    if sources.len() > 1 && sources.contains(&"'none'") {
        bail!("--gadget-frame-ancestors: 'none' cannot be combined with other sources");
    }
    Ok(sources.join(" "))
}

/// A CSP scheme or host source: `https:`, `https://host`, `https://*.host:port`, `host`; no path, query, quote or
/// separator.
fn is_host_source(source: &str) -> bool {
    let (scheme, rest) = match source.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => match source.strip_suffix(':') {
            Some(scheme) => return is_scheme(scheme),
            None => (None, source),
        },
    };
    if scheme.is_some_and(|scheme| !is_scheme(scheme)) {
        return false;
    }
    let host = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match host.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host, None),
    };
    let port_ok = port.is_none_or(|port| {
        port == "*" || (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    });
    let host = host.strip_prefix("*.").unwrap_or(host);
    port_ok
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn is_scheme(scheme: &str) -> bool {
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ancestors_take_spaces_or_commas_and_default_to_self() {
        assert_eq!(parse_frame_ancestors("").unwrap(), "'self'");
        assert_eq!(parse_frame_ancestors("'self'").unwrap(), "'self'");
        assert_eq!(
            parse_frame_ancestors("https://desktop.example.com, 'self'").unwrap(),
            "https://desktop.example.com 'self'"
        );
        assert_eq!(
            parse_frame_ancestors("https://*.example.com:8443 http://localhost:3000/").unwrap(),
            "https://*.example.com:8443 http://localhost:3000/"
        );
        assert_eq!(parse_frame_ancestors("https:").unwrap(), "https:");
        assert_eq!(parse_frame_ancestors("'none'").unwrap(), "'none'");
    }

    #[test]
    fn frame_ancestors_refuse_what_would_break_the_policy() {
        for bad in [
            "https://a.example.com; script-src *",
            "'unsafe-inline'",
            "https://a.example.com/path",
            "'none' 'self'",
            "https://a.example.com:port",
            "1http://x",
        ] {
            assert!(parse_frame_ancestors(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn if_none_match_compares_strong_and_weak_tags() {
        let tag = etag(b"x");
        let matches = |value: &str| etag_matches(&HeaderValue::from_str(value).unwrap(), &tag);
        assert!(matches(tag.to_str().unwrap()));
        assert!(matches(&format!("W/{}", tag.to_str().unwrap())));
        assert!(matches(&format!("\"other\", {}", tag.to_str().unwrap())));
        assert!(matches("*"));
        assert!(!matches("\"other\""));
    }

    #[test]
    fn every_bundled_file_is_embedded() {
        let layer = GadgetLayer::new("").unwrap();
        for (name, _, body) in FILES {
            assert!(!body.is_empty(), "{name} is empty");
        }
        assert!(
            layer
                .site
                .content_security_policy
                .to_str()
                .unwrap()
                .ends_with("frame-ancestors 'self'")
        );
    }
}
