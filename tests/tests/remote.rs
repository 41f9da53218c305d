//! Remote sources in workerd: `/img/<options>/http://127.0.0.1:<port>/…` fetched from a
//! real HTTP server on loopback (the remote image host), only what
//! `IMAGE_REMOTE_PATTERNS` lists, with redirects re-checked, a deadline, a size limit,
//! the original kept in the Cache API and derivatives revalidated by the remote ETag.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use course_edge_e2e::fixtures::photo;
use course_edge_e2e::{EdgeOptions, Stack, get_accepting as get, header as header_of};
use course_edge_worker::image::decode::read_header;

const WEBP_ONLY: &str = "image/webp,image/apng,image/*,*/*;q=0.8";

/// What the remote host was asked: path, query, `If-None-Match`.
type Log = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

#[derive(Clone)]
struct Remote {
    log: Log,
    photo: Arc<Vec<u8>>,
}

async fn serve(State(remote): State<Remote>, uri: Uri, headers: HeaderMap) -> Response {
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .map(|v| v.to_str().unwrap().to_owned());
    remote.log.lock().unwrap().push((
        uri.path().to_owned(),
        uri.query().map(str::to_owned),
        inm.clone(),
    ));
    let port = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit(':').next())
        .unwrap_or("0")
        .to_owned();
    let redirect = |to: String| (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    match uri.path() {
        "/ok/photo.jpg" if inm.as_deref() == Some("\"v1\"") => {
            StatusCode::NOT_MODIFIED.into_response()
        }
        "/ok/photo.jpg" | "/private/photo.jpg" => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::ETAG, "\"v1\""),
            ],
            remote.photo.to_vec(),
        )
            .into_response(),
        "/ok/hop" => redirect(String::from("/ok/photo.jpg")),
        "/ok/out" => redirect(format!("http://127.0.0.1:{port}/private/photo.jpg")),
        "/ok/loop" => redirect(String::from("/ok/loop")),
        "/ok/page.html" => ([(header::CONTENT_TYPE, "text/html")], "<p>hi</p>").into_response(),
        "/ok/big.jpg" => {
            // 1.5 MB, streamed without a Content-Length.
            let chunks = (0..15).map(|_| Ok::<_, std::io::Error>(vec![0xFFu8; 100_000]));
            (
                [(header::CONTENT_TYPE, "image/jpeg")],
                axum::body::Body::from_stream(futures_util::stream::iter(chunks)),
            )
                .into_response()
        }
        "/ok/slow.jpg" => {
            tokio::time::sleep(Duration::from_secs(4)).await;
            (
                [(header::CONTENT_TYPE, "image/jpeg")],
                remote.photo.to_vec(),
            )
                .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn remote_host(photo: Vec<u8>) -> (u16, Log) {
    let log: Log = Arc::default();
    let state = Remote {
        log: log.clone(),
        photo: Arc::new(photo),
    };
    let app = axum::Router::new().fallback(serve).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, log)
}

fn asked(log: &Log, path: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(p, ..)| p == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sources_are_fetched_only_as_listed_and_kept() {
    let (port, log) = remote_host(photo(1200, 800)).await;
    let base = format!("http://127.0.0.1:{port}");
    let options = EdgeOptions::default()
        .var("IMAGE_REMOTE_PATTERNS", &format!("{base}/ok/"))
        .var("IMAGE_REMOTE_PRIVATE", "allow")
        .var("IMAGE_REMOTE_TIMEOUT_MS", "1500")
        .var("IMAGE_MAX_SOURCE_BYTES", "1000000")
        .var("IMAGE_SOURCE_TTL", "1");
    let stack = Stack::start_with(options).await;

    // Fetched once, then the derivative from the edge cache and a second derivative
    // from the original kept in the Cache API.
    let path = format!("/img/w=100/{base}/ok/photo.jpg");
    let first = get(&stack, &path, WEBP_ONLY).await;
    assert_eq!(first.status(), 200, "{}", stack.edge.log());
    assert_eq!(header_of(&first, "x-edge-cache"), "MISS");
    assert_eq!(header_of(&first, "x-edge-remote"), "fetched");
    assert_eq!(header_of(&first, "content-type"), "image/webp");
    let body = first.bytes().await.unwrap();
    let h = read_header(&body).unwrap();
    assert_eq!((h.width, h.height), (100, 67));
    let again = get(&stack, &path, WEBP_ONLY).await;
    assert_eq!(header_of(&again, "x-edge-cache"), "HIT");
    let other = get(
        &stack,
        &format!("/img/w=200/{base}/ok/photo.jpg"),
        WEBP_ONLY,
    )
    .await;
    assert_eq!(other.status(), 200, "{}", stack.edge.log());
    assert_eq!(header_of(&other, "x-edge-remote"), "cached");
    assert_eq!(asked(&log, "/ok/photo.jpg"), 1, "{:?}", log.lock().unwrap());

    // The source's query is part of the source.
    let queried = get(
        &stack,
        &format!("/img/w=100/{base}/ok/photo.jpg?v=2"),
        WEBP_ONLY,
    )
    .await;
    assert_eq!(queried.status(), 200);
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|(p, q, _)| p == "/ok/photo.jpg" && q.as_deref() == Some("v=2"))
    );

    // A redirect inside the list is followed; one out of it is refused, as is a path
    // the list does not hold, and a chain longer than three.
    let hop = get(&stack, &format!("/img/w=100/{base}/ok/hop"), WEBP_ONLY).await;
    assert_eq!(hop.status(), 200, "{}", stack.edge.log());
    for (source, status) in [
        ("ok/out", 403),
        ("private/photo.jpg", 403),
        ("ok/loop", 502),
        ("ok/missing.jpg", 404),
        ("ok/page.html", 415),
        ("ok/big.jpg", 422),
        ("ok/slow.jpg", 504),
    ] {
        let response = get(&stack, &format!("/img/w=100/{base}/{source}"), WEBP_ONLY).await;
        assert_eq!(response.status(), status, "{source}: {}", stack.edge.log());
        let body: protocol::ErrorBody = response.json().await.unwrap();
        assert_eq!(body.error.field.as_deref(), Some("source"), "{source}");
    }
    assert_eq!(
        asked(&log, "/ok/loop"),
        4,
        "the first try and three redirects"
    );
    // Dot segments out of the listed prefix: whoever resolves them (the client here),
    // the result is outside the list.
    let dotted = get(
        &stack,
        &format!("/img/w=100/{base}/ok/../private/photo.jpg"),
        WEBP_ONLY,
    )
    .await;
    assert!(
        matches!(dotted.status().as_u16(), 400 | 403),
        "{}",
        dotted.status()
    );
    assert_eq!(asked(&log, "/private/photo.jpg"), 0, "never fetched");

    // Past IMAGE_SOURCE_TTL the stored derivative is revalidated with the remote ETag:
    // a 304 keeps it, and the picture is not fetched again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let revalidated = get(&stack, &path, WEBP_ONLY).await;
    assert_eq!(revalidated.status(), 200);
    assert_eq!(revalidated.bytes().await.unwrap(), body);
    let mut conditional = false;
    for _ in 0..40 {
        conditional = log
            .lock()
            .unwrap()
            .iter()
            .any(|(p, _, inm)| p == "/ok/photo.jpg" && inm.as_deref() == Some("\"v1\""));
        if conditional {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(conditional, "{:?}", log.lock().unwrap());
}
