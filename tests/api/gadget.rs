//! The agent gadget served on the gRPC port: the page, its assets and their headers over plain HTTP/1.1 (as a
//! browser loads them), gRPC and gRPC-web beside it, and the committed bundle built from the current sources.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::Full;
use rstest::rstest;
use sha2::{Digest as _, Sha256};

use crate::harness::{Backend, TestApp, customer, ok};

/// One HTTP/1.1 answer: status, headers and the whole body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("a text header")
    }
}

/// Sends one HTTP/1.1 request to the app, on a connection of its own.
async fn http1(app: &TestApp, request: Request<Full<Bytes>>) -> Answer {
    let (parts, body) = crate::harness::http1(app.addr, request).await;
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn request(app: &TestApp, method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, app.addr.to_string())
}

async fn get(app: &TestApp, path: &str) -> Answer {
    http1(
        app,
        request(app, Method::GET, path)
            .body(Full::default())
            .unwrap(),
    )
    .await
}

async fn sqlite_app() -> TestApp {
    TestApp::spawn(Backend::Sqlite)
        .await
        .expect("SQLite is always available")
}

fn assert_security_headers(answer: &Answer, frame_ancestors: &str) {
    let policy = answer.header(header::CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        &format!("frame-ancestors {frame_ancestors}"),
    ] {
        assert!(
            policy.split(';').any(|part| part.trim() == directive),
            "{directive:?} missing from {policy:?}"
        );
    }
    assert_eq!(answer.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(answer.header(header::REFERRER_POLICY), "no-referrer");
}

#[tokio::test]
async fn the_gadget_page_is_served_with_its_security_headers() {
    let app = sqlite_app().await;
    let page = get(&app, "/gadget/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header(header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert_security_headers(&page, "'self'");
    assert_eq!(page.header(header::CACHE_CONTROL), "no-cache");
    let html = std::str::from_utf8(&page.body).expect("UTF-8 page");
    assert!(html.contains(r#"<script defer src="gadget.js"></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="gadget.css">"#));
    assert!(html.contains(r#"data-testid="search-input""#));
    assert_eq!(page.body.as_ref(), read_web("index.html").as_slice());
}

#[rstest]
#[case::root("/")]
#[case::without_slash("/gadget")]
#[tokio::test]
async fn the_root_redirects_to_the_gadget(#[case] path: &str) {
    let app = sqlite_app().await;
    let answer = get(&app, path).await;
    assert!(
        answer.status.is_redirection(),
        "{path}: {:?}",
        answer.status
    );
    assert_eq!(answer.header(header::LOCATION), "/gadget/");
}

#[rstest]
#[case::script("gadget.js", "text/javascript; charset=utf-8")]
#[case::style("gadget.css", "text/css; charset=utf-8")]
#[tokio::test]
async fn the_assets_load_with_their_content_types(#[case] file: &str, #[case] content_type: &str) {
    let app = sqlite_app().await;
    let path = format!("/gadget/{file}");
    let asset = get(&app, &path).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert_eq!(asset.header(header::CONTENT_TYPE), content_type);
    assert_security_headers(&asset, "'self'");
    assert_eq!(
        asset.body.as_ref(),
        read_web(&format!("dist/{file}")).as_slice()
    );

    // Revalidation by ETag, and HEAD.
    let etag = asset.header(header::ETAG).to_owned();
    let again = http1(
        &app,
        request(&app, Method::GET, &path)
            .header(header::IF_NONE_MATCH, &etag)
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    let head = http1(
        &app,
        request(&app, Method::HEAD, &path)
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header(header::CONTENT_LENGTH),
        asset.body.len().to_string()
    );
    assert_eq!(head.header(header::ETAG), etag);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn unknown_files_are_not_found_and_other_methods_not_allowed() {
    let app = sqlite_app().await;
    for path in [
        "/gadget/missing.js",
        "/gadget/inputs.sha256",
        "/gadget/../Cargo.toml",
        "/gadget/dist/gadget.js",
    ] {
        let answer = get(&app, path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let answer = http1(
            &app,
            request(&app, method.clone(), "/gadget/")
                .body(Full::from("x"))
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.header(header::ALLOW), "GET, HEAD");
    }
}

#[tokio::test]
async fn frame_ancestors_come_from_the_setting() {
    let app = TestApp::spawn_with(Backend::Sqlite, |settings| {
        settings.gadget_frame_ancestors = "https://desktop.example.com, 'self'".to_owned();
    })
    .await
    .unwrap();
    let page = get(&app, "/gadget/").await;
    assert_security_headers(&page, "https://desktop.example.com 'self'");
}

#[tokio::test]
async fn grpc_and_grpc_web_still_answer_on_the_same_port() {
    let app = sqlite_app().await;
    assert_eq!(get(&app, "/gadget/").await.status, StatusCode::OK);

    // Native gRPC (HTTP/2).
    let created = ok(app
        .customers()
        .create_customer(app.setup(customer_context::pb::CreateCustomerRequest {
            customer: Some(customer("Ana", "López")),
        }))
        .await);
    assert_eq!(created.version, 1);

    // gRPC-web over HTTP/1.1, as the gadget calls: an empty HealthCheckRequest in one frame.
    let answer = http1(
        &app,
        request(&app, Method::POST, "/grpc.health.v1.Health/Check")
            .header(header::CONTENT_TYPE, "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(Full::from(vec![0u8, 0, 0, 0, 0]))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header(header::CONTENT_TYPE),
        "application/grpc-web+proto"
    );
    let trailers = String::from_utf8_lossy(&answer.body);
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
}

/// The bundle in web/dist was built from the sources as they are: the hash of its inputs, as `web/build.mjs`
/// computes it, matches `web/dist/inputs.sha256`.
#[test]
fn the_committed_bundle_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web = root.join("web");
    let mut files: Vec<PathBuf> = [
        "build.mjs",
        "buf.gen.yaml",
        "index.html",
        "style.css",
        "package.json",
        "package-lock.json",
    ]
    .iter()
    .map(|name| web.join(name))
    .collect();
    files_under(
        &web.join("src"),
        "ts",
        &[web.join("src").join("gen")],
        &mut files,
    );
    files_under(&web.join("third_party"), "proto", &[], &mut files);
    files_under(
        &root.join("proto").join("customer_context").join("v1"),
        "proto",
        &[],
        &mut files,
    );
    let mut inputs: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(root).expect("under the repository");
            let path = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            (path, file)
        })
        .collect();
    inputs.sort();
    let mut all = Sha256::new();
    for (path, file) in &inputs {
        let content = std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        all.update(format!("{}  {path}\n", hex(&Sha256::digest(&content))));
    }
    let computed = hex(&all.finalize());
    let committed = String::from_utf8(read_web("dist/inputs.sha256")).expect("a hex line");
    assert_eq!(
        committed.trim(),
        computed,
        "web/dist is stale: run `npm ci && npm run build` in web/ (inputs: {:?})",
        inputs.iter().map(|(path, _)| path).collect::<Vec<_>>()
    );
}

fn files_under(dir: &Path, extension: &str, skip: &[PathBuf], found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {dir:?}: {e}"));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let path = entry.path();
        let kind = entry.file_type().expect("a file type");
        if kind.is_dir() {
            if !skip.contains(&path) {
                files_under(&path, extension, skip, found);
            }
        } else if kind.is_file() && path.extension().is_some_and(|ext| ext == extension) {
            found.push(path);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn read_web(path: &str) -> Vec<u8> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("web").join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {file:?}: {e}"))
}
