//! Uploads through the edge (`PUT /admin/media/<key>`, `scripts/upload`), on the shared
//! stack of `purge.rs`: a replaced original changes every derivative of it and removes
//! the old ones from R2 `derived/`; bad or unauthenticated uploads change nothing.

use std::time::{Duration, Instant};

use course_edge_e2e::{
    Stack, TEST_ADMIN_TOKEN, TEST_UPLOAD_TOKEN, client, fixtures, header, repo_root,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `UPLOAD_MAX_BYTES` on the shared stack.
pub const LIMIT: usize = 1_000_000;
const KEY: &str = "uploads/cover.jpg";

async fn put(stack: &Stack, key: &str, bytes: Vec<u8>, token: Option<&str>) -> reqwest::Response {
    let mut request = client()
        .put(stack.edge.url(&format!("/admin/media/{key}")))
        .body(bytes);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.send().await.unwrap()
}

async fn json(response: reqwest::Response) -> serde_json::Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"))
}

async fn head_media(stack: &Stack, key: &str) -> reqwest::Response {
    client()
        .head(stack.edge.url(&format!("/media/{key}")))
        .send()
        .await
        .unwrap()
}

/// Waits for the edge to write `key` into R2 (derivatives are stored after the response).
pub async fn wait_for_object(stack: &Stack, key: &str) {
    let started = Instant::now();
    while stack.edge.get_object(key).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{key} never reached R2\n{}",
            stack.edge.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A content team uploads a cover through the edge; an admin makes it a course's cover;
/// the course page renders it with the size the upload recorded (no layout shift).
pub async fn an_uploaded_cover_renders_with_its_size_on_the_course_page(stack: &Stack) {
    let key = "covers/uploaded-cover.jpg";
    let stored = put(
        stack,
        key,
        fixtures::photo(480, 300),
        Some(TEST_UPLOAD_TOKEN),
    )
    .await;
    assert!(stored.status().is_success(), "{}", stored.status());
    let slug = "sql-intermediate";
    let current = client()
        .get(format!("{}/api/courses/{slug}", stack.origin.url()))
        .send()
        .await
        .unwrap();
    let etag = header(&current, "etag");
    let edit = client()
        .put(format!("{}/admin/courses/{slug}", stack.origin.url()))
        .header("authorization", format!("Bearer {TEST_ADMIN_TOKEN}"))
        .header("if-match", &etag)
        .json(&serde_json::json!({
            "title": "SQL with an uploaded cover", "summary": "s", "locale": "en",
            "level": "intermediate", "tags": ["sql"], "plan": "free", "cover_image": key
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(edit.status(), 200, "{}", stack.origin.log());
    let started = Instant::now();
    loop {
        let page = client()
            .get(stack.edge.url(&format!("/courses/{slug}")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if let Some(at) = page.find("uploaded-cover.jpg") {
            let tag_start = page[..at].rfind("<img").unwrap();
            let tag = &page[tag_start..tag_start + page[tag_start..].find('>').unwrap()];
            assert!(
                tag.contains(r#"width="480""#) && tag.contains(r#"height="300""#),
                "{tag}\n{}",
                stack.origin.log()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the edited cover never reached the page"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn replacing_an_original_changes_every_derivative_and_removes_the_old_ones(
    stack: &Stack,
) {
    let stored = put(
        stack,
        KEY,
        fixtures::photo(320, 200),
        Some(TEST_UPLOAD_TOKEN),
    )
    .await;
    assert_eq!(stored.status(), 201, "{}", stack.edge.log());
    let first = json(stored).await;
    assert_eq!(first["width"], 320);
    assert_eq!(first["height"], 200);
    assert_eq!(first["replaced"], false);
    assert_eq!(first["content_type"], "image/jpeg");
    assert_eq!(first["uploaded_by"], "content");
    let first_etag = first["etag"].as_str().unwrap().to_owned();
    let original = head_media(stack, KEY).await;
    assert_eq!(original.status(), 200);
    assert_eq!(header(&original, "etag"), first_etag);
    assert_eq!(header(&original, "x-media-width"), "320");
    assert_eq!(header(&original, "x-media-height"), "200");

    // Three derivatives: two sizes, two formats; each made, stored in derived/, then a HIT.
    let variants = [
        ("/img/width=96/", "image/jpeg", (96, 144)),
        ("/img/width=64,format=webp/", "image/webp", (64, 96)),
        ("/img/width=48/", "image/jpeg", (48, 72)),
    ];
    let mut before = Vec::new();
    for (options, _, _) in variants {
        let url = stack.edge.url(&format!("{options}{KEY}"));
        let made = client().get(&url).send().await.unwrap();
        assert_eq!(made.status(), 200, "{options}\n{}", stack.edge.log());
        let derivative = header(&made, "x-edge-derivative");
        let bytes = made.bytes().await.unwrap();
        wait_for_object(stack, &derivative).await;
        let hit = client().get(&url).send().await.unwrap();
        assert_eq!(header(&hit, "x-edge-cache"), "HIT", "{options}");
        before.push((url, derivative, bytes));
    }

    let replaced = put(
        stack,
        KEY,
        fixtures::photo(200, 300),
        Some(TEST_UPLOAD_TOKEN),
    )
    .await;
    assert_eq!(replaced.status(), 200);
    let second = json(replaced).await;
    assert_eq!(second["replaced"], true);
    assert_eq!(
        (second["width"].clone(), second["height"].clone()),
        (200.into(), 300.into())
    );
    assert_eq!(second["derivatives_removed"], 3, "{second}");
    assert_ne!(second["etag"], first["etag"]);

    // At once (this isolate applied the purge itself): every derivative is new, made from
    // the portrait, and the old ones are gone from derived/.
    for ((url, old_derivative, old_bytes), (options, content_type, size)) in
        before.iter().zip(variants)
    {
        let after = client().get(url).send().await.unwrap();
        assert_eq!(after.status(), 200);
        assert_ne!(
            header(&after, "x-edge-cache"),
            "HIT",
            "{options}: the old derivative is not served"
        );
        assert_eq!(header(&after, "content-type"), content_type);
        assert_ne!(&header(&after, "x-edge-derivative"), old_derivative);
        let new_bytes = after.bytes().await.unwrap();
        assert_ne!(&new_bytes, old_bytes);
        let picture = image::load_from_memory(&new_bytes).unwrap();
        assert_eq!((picture.width(), picture.height()), size, "{options}");
        assert_eq!(
            stack.edge.get_object(old_derivative),
            None,
            "{options}: the old derivative is gone from derived/"
        );
    }
    let original = head_media(stack, KEY).await;
    assert_eq!(header(&original, "etag"), second["etag"].as_str().unwrap());
    assert_eq!(header(&original, "x-media-width"), "200");
}

/// A request with a chunked body (no `Content-Length`), over a raw socket.
async fn put_chunked(stack: &Stack, key: &str) -> String {
    let url = reqwest::Url::parse(&stack.edge.url("/")).unwrap();
    let mut socket = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap()))
        .await
        .unwrap();
    let request = format!(
        "PUT /admin/media/{key} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {TEST_UPLOAD_TOKEN}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n4\r\n\u{ff}\u{d8}\r\n0\r\n\r\n",
        url.authority()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    answer
}

pub async fn bad_or_unauthenticated_uploads_are_refused_and_change_nothing(stack: &Stack) {
    let current = stack.edge.get_object(KEY).unwrap();
    let photo = fixtures::photo(64, 48);
    for token in [None, Some("wrong-token-wrong-token-wrong-token")] {
        let refused = put(stack, KEY, photo.clone(), token).await;
        assert_eq!(refused.status(), 401, "{token:?}");
        assert_eq!(json(refused).await["error"]["field"], "authorization");
    }
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec();
    let png = fixtures::png_with_alpha(8, 8);
    for (key, bytes, status, field, says) in [
        ("uploads/logo.svg", svg.clone(), 415, "body", "SVG"),
        ("uploads/logo.png", svg, 415, "body", "SVG"),
        (KEY, png, 415, "body", "name it .png"),
        (
            KEY,
            b"plain text".to_vec(),
            415,
            "body",
            "none of the accepted",
        ),
        ("uploads/notes.txt", b"x".to_vec(), 415, "key", ".jpg"),
        ("derived/ab/x.jpg", photo.clone(), 400, "key", "derived/"),
        (KEY, vec![0xFF; LIMIT + 1], 413, "content-length", "limit"),
    ] {
        let refused = put(stack, key, bytes, Some(TEST_UPLOAD_TOKEN)).await;
        assert_eq!(refused.status(), status, "{key}");
        let error = json(refused).await;
        assert_eq!(error["error"]["field"], field, "{key}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{key}: {message}");
    }
    // A body R2 finds different from its Content-MD5 is not stored.
    let corrupted = client()
        .put(stack.edge.url(&format!("/admin/media/{KEY}")))
        .header("authorization", format!("Bearer {TEST_UPLOAD_TOKEN}"))
        .header("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(corrupted.status(), 400, "{}", stack.edge.log());
    assert_eq!(json(corrupted).await["error"]["code"], "bad_request");
    let chunked = put_chunked(stack, KEY).await;
    assert!(chunked.starts_with("HTTP/1.1 411"), "{chunked}");
    let wrong_method = client()
        .get(stack.edge.url(&format!("/admin/media/{KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(header(&wrong_method, "allow"), "PUT");
    assert!(
        stack.edge.get_object(KEY).unwrap() == current,
        "nothing refused replaced the original in R2"
    );
    for key in ["uploads/logo.svg", "uploads/logo.png", "uploads/notes.txt"] {
        assert_eq!(stack.edge.get_object(key), None, "{key}");
    }
}

async fn run_upload_script(stack: &Stack, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(repo_root().join("scripts/upload"))
        .args(args)
        .args(["--edge", &stack.edge.url("")])
        .env("UPLOAD_TOKEN", TEST_UPLOAD_TOKEN)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub async fn the_upload_script_shows_progress_and_resumes(stack: &Stack) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("nested")).unwrap();
    std::fs::write(root.join("a.jpg"), fixtures::photo(64, 48)).unwrap();
    std::fs::write(root.join("nested/b.png"), fixtures::png_with_alpha(20, 10)).unwrap();
    std::fs::write(root.join(".hidden.jpg"), b"never read").unwrap();
    let dir_arg = root.to_str().unwrap();
    let args = [dir_arg, "--prefix", "bulk"];

    let (ok, log) = run_upload_script(stack, &args).await;
    assert!(ok, "{log}\n{}", stack.edge.log());
    assert!(
        log.contains("2 new, 0 replaced, 0 already current, 0 failed"),
        "{log}"
    );
    assert!(
        log.contains("[2/2 files"),
        "progress across files and bytes: {log}"
    );
    let b = head_media(stack, "bulk/nested/b.png").await;
    assert_eq!(b.status(), 200);
    assert_eq!(header(&b, "x-media-width"), "20");
    assert_eq!(head_media(stack, "bulk/.hidden.jpg").await.status(), 404);

    // Run again: every file is current (its MD5 is the stored ETag); nothing is sent.
    let (ok, log) = run_upload_script(stack, &args).await;
    assert!(ok, "{log}");
    assert!(
        log.contains("0 new, 0 replaced, 2 already current"),
        "{log}"
    );

    // One file changed, one refused: the change is stored, the refusal named.
    std::fs::write(root.join("a.jpg"), fixtures::photo(48, 64)).unwrap();
    std::fs::write(root.join("nested/c.svg"), b"<svg/>").unwrap();
    let (ok, log) = run_upload_script(stack, &args).await;
    assert!(!ok, "a refused file fails the run: {log}");
    assert!(
        log.contains("1 replaced, 1 already current, 1 failed"),
        "{log}"
    );
    assert!(
        log.contains("bulk/nested/c.svg") && log.contains("SVG"),
        "{log}"
    );
    assert_eq!(
        header(&head_media(stack, "bulk/a.jpg").await, "x-media-width"),
        "48"
    );

    // Two directories with a file of the same name would share a key: refused up front.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("a.jpg"), fixtures::photo(10, 10)).unwrap();
    let (ok, log) = run_upload_script(
        stack,
        &[dir_arg, other.path().to_str().unwrap(), "--prefix", "bulk"],
    )
    .await;
    assert!(!ok && log.contains("would both be bulk/a.jpg"), "{log}");
}

/// On the stack whose purge ledger is unreachable: the upload is stored and says its
/// purge is pending; the purge waits in the outbox (R2 `derived/_purges/`).
pub async fn an_upload_whose_purge_cannot_be_applied_keeps_it_in_the_outbox(stack: &Stack) {
    let key = "uploads/unpurged.jpg";
    let answer = put(stack, key, fixtures::photo(40, 30), Some(TEST_UPLOAD_TOKEN)).await;
    assert_eq!(answer.status(), 201);
    let body = json(answer).await;
    assert_eq!(body["purge"]["applied"], false, "{body}");
    assert_eq!(body["purge"]["pending"], true);
    assert!(stack.edge.get_object(key).is_some(), "the bytes are stored");
    let id = body["purge"]["id"].as_str().unwrap();
    let outbox = stack
        .edge
        .get_object(&format!("derived/_purges/{id}.json"))
        .expect("the purge waits in the outbox");
    let pending: serde_json::Value = serde_json::from_slice(&outbox).unwrap();
    assert_eq!(
        pending["purge"]["change"]["urls"][0],
        format!("/media/{key}")
    );
    assert!(pending["not_before_ms"].as_u64().unwrap() > 0);
}

/// An outbox entry: `due` ones may be applied by anyone, others belong to their upload.
fn outbox_entry(id: &str, url: &str, due: bool) -> Vec<u8> {
    let not_before_ms: u64 = if due { 0 } else { 4_000_000_000_000 };
    serde_json::json!({
        "purge": {"id": id, "change": {"urls": [url]}},
        "not_before_ms": not_before_ms,
    })
    .to_string()
    .into_bytes()
}

/// A purge left in the outbox (as by an upload while the ledger was down) is applied by
/// the next outbox cron run (`*/5 * * * *`), and leaves the outbox.
pub async fn the_cron_run_applies_purges_left_in_the_outbox(stack: &Stack) {
    let url = stack.edge.url(&format!("/media/{KEY}"));
    client().get(&url).send().await.unwrap();
    let hit = client().get(&url).send().await.unwrap();
    assert_eq!(header(&hit, "x-edge-cache"), "HIT");
    let marker = "derived/_purges/left-behind.json";
    let media = format!("/media/{KEY}");
    stack
        .edge
        .put_object(marker, &outbox_entry("left-behind", &media, true));
    // An entry whose upload may still be streaming is not anyone else's to apply.
    let young = "derived/_purges/in-flight.json";
    stack
        .edge
        .put_object(young, &outbox_entry("in-flight", &media, false));
    let cron = client()
        .get(stack.edge.url("/__scheduled?cron=*/5+*+*+*+*"))
        .send()
        .await
        .unwrap();
    assert_eq!(cron.status(), 200, "{}", stack.edge.log());
    assert_eq!(stack.edge.get_object(marker), None, "applied, then removed");
    assert!(stack.edge.get_object(young).is_some(), "left to its upload");
    // Asked first under another spelling of the same key (found by review: the purge was
    // checked against the raw path, and `%6F` missed it).
    let respelled = stack
        .edge
        .url(&format!("/media/{}", KEY.replace("cover", "c%6Fver")));
    let after = client().get(&respelled).send().await.unwrap();
    assert_eq!(
        header(&after, "x-edge-cache"),
        "MISS",
        "the pending purge took effect, however the URL is spelled"
    );
}

/// A successful upload applies purges an earlier failure left in the outbox; a body
/// larger than the head read to judge it is piped whole into R2.
pub async fn the_next_upload_flushes_the_outbox_and_large_bodies_arrive_whole(stack: &Stack) {
    let url = stack.edge.url("/api/videos/4");
    client().get(&url).send().await.unwrap();
    assert_eq!(
        header(&client().get(&url).send().await.unwrap(), "x-edge-cache"),
        "HIT"
    );
    let marker = "derived/_purges/before-recovery.json";
    stack.edge.put_object(
        marker,
        &outbox_entry("before-recovery", "/api/videos/4", true),
    );
    // 900 kB: the head is 256 KiB, the rest is piped.
    let mut movie = vec![0, 0, 0, 24];
    movie.extend_from_slice(b"ftypisom\0\0\x02\0isommp41");
    movie.extend((0..900_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let stored = put(
        stack,
        "video/9/movie.mp4",
        movie.clone(),
        Some(TEST_UPLOAD_TOKEN),
    )
    .await;
    assert_eq!(stored.status(), 201, "{}", stack.edge.log());
    let body = json(stored).await;
    assert_eq!(body["size"], movie.len());
    assert_eq!(body["content_type"], "video/mp4");
    assert_eq!(body["purge"]["earlier_pending_applied"], 1, "{body}");
    assert_eq!(stack.edge.get_object(marker), None);
    let own = body["purge"]["id"].as_str().unwrap();
    let base = own.trim_end_matches("-stored");
    assert_eq!(
        stack
            .edge
            .get_object(&format!("derived/_purges/{base}.json")),
        None,
        "its own entry leaves the outbox once its purge is applied"
    );
    assert!(
        stack.edge.get_object("video/9/movie.mp4").unwrap() == movie,
        "every byte arrived, in order"
    );
    assert_eq!(
        header(&client().get(&url).send().await.unwrap(), "x-edge-cache"),
        "MISS",
        "the left-behind purge took effect"
    );
}
