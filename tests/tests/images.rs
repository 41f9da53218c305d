//! Image derivatives in workerd: negotiation by `Accept`, magic bytes and decoded
//! dimensions, headers, the R2 derivative, the second request from cache, bad inputs,
//! signatures, and a 40 MP JPEG inside the 128 MiB isolate.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;

use course_edge_e2e::fixtures::{photo, png_with_alpha, with_exif};
use course_edge_e2e::{EdgeOptions, Stack, get_accepting as get, header};
use course_edge_worker::image::decode::{SourceFormat, read_header};

const CHROME: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
const SAFARI_OLD: &str = "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5";
const LEGACY: &str = "*/*";
/// A browser with WebP but no AVIF (Chrome's AVIF path is its own test).
const WEBP_ONLY: &str = "image/webp,image/apng,image/*,*/*;q=0.8";

/// A 40 MP JPEG whose frame header says progressive (SOF2): the limit reads only the
/// header, and a progressive 40 MP 4:2:0 frame needs 114 MiB of coefficients.
fn progressive_header(mut jpeg: Vec<u8>) -> Vec<u8> {
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 1] = 0xC2;
    jpeg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derivatives_are_negotiated_resized_stored_and_cached() {
    let options = EdgeOptions::default()
        .object("photos/beach.jpg", photo(2400, 1600))
        .object("art/logo.png", png_with_alpha(600, 300));
    let stack = Stack::start_with(options).await;

    let table = [
        (
            "/img/w=800/photos/beach.jpg",
            WEBP_ONLY,
            SourceFormat::Webp,
            "image/webp",
            (800, 533),
        ),
        (
            "/img/width=800/photos/beach.jpg",
            SAFARI_OLD,
            SourceFormat::Jpeg,
            "image/jpeg",
            (800, 533),
        ),
        (
            "/img/w=700/photos/beach.jpg",
            LEGACY,
            SourceFormat::Jpeg,
            "image/jpeg",
            (700, 467),
        ),
        (
            "/img/w=300,h=300,fit=cover/photos/beach.jpg",
            LEGACY,
            SourceFormat::Jpeg,
            "image/jpeg",
            (300, 300),
        ),
        (
            "/img/w=300/art/logo.png",
            LEGACY,
            SourceFormat::Png,
            "image/png",
            (300, 150),
        ),
        (
            "/img/w=300/art/logo.png",
            WEBP_ONLY,
            SourceFormat::Webp,
            "image/webp",
            (300, 150),
        ),
    ];
    for (path, accept, format, content_type, dims) in table {
        let first = get(&stack, path, accept).await;
        assert_eq!(first.status(), 200, "{path}: {}", stack.edge.log());
        assert_eq!(header(&first, "x-edge-cache"), "MISS", "{path} {accept}");
        assert_eq!(header(&first, "content-type"), content_type);
        assert_eq!(header(&first, "vary"), "Accept");
        assert!(header(&first, "cache-control").starts_with("public, max-age=86400"));
        let timing = header(&first, "server-timing");
        assert!(
            timing.contains("decode;dur=") && timing.contains("encode;dur="),
            "{timing}"
        );
        let derivative = header(&first, "x-edge-derivative");
        let etag = header(&first, "etag");
        let body = first.bytes().await.unwrap().to_vec();
        let decoded = read_header(&body).unwrap();
        assert_eq!(
            (decoded.format, decoded.width, decoded.height),
            (format, dims.0, dims.1),
            "{path} {accept}"
        );

        let second = get(&stack, path, accept).await;
        assert_eq!(header(&second, "x-edge-cache"), "HIT", "{path}");
        assert_eq!(header(&second, "etag"), etag);
        assert_eq!(second.bytes().await.unwrap().to_vec(), body);

        // Encoded once: the derivative is in R2 under derived/.
        let mut stored = None;
        for _ in 0..20 {
            stored = stack.edge.get_object(&derivative);
            if stored.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(stored.as_deref(), Some(&body[..]), "{derivative}");
    }

    // Equivalent spellings share one derivative.
    let a = get(
        &stack,
        "/img/w=640,q=85,fit=scale-down/photos/beach.jpg",
        LEGACY,
    )
    .await;
    assert_eq!(header(&a, "x-edge-cache"), "MISS");
    let b = get(&stack, "/img/width=640/photos/beach.jpg", LEGACY).await;
    assert_eq!(header(&b, "x-edge-cache"), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_their_status_and_never_a_500() {
    let jpeg = photo(200, 100);
    let options = EdgeOptions::default()
        .object("bad/text.jpg", b"this is not an image".to_vec())
        .object("bad/cut.jpg", jpeg[..jpeg.len() / 3].to_vec())
        .object("ok/small.jpg", jpeg.clone())
        .object("bad/progressive.jpg", progressive_header(photo(8000, 5000)))
        .object("big/wide.jpg", photo(3640, 2400));
    let stack = Stack::start_with(options).await;
    let table = [
        ("/img/w=0/ok/small.jpg", 400, Some("w")),
        ("/img/fit=fill/ok/small.jpg", 400, Some("fit")),
        // blur=3 parses, but this deployment's filter rule lists other radii.
        ("/img/w=100,blur=3/ok/small.jpg", 400, Some("blur")),
        ("/img/w=100,blur=300/ok/small.jpg", 400, Some("blur")),
        ("/img/w=100,rotate=45/ok/small.jpg", 400, Some("rotate")),
        (
            "/img/w=100,segment=foreground/ok/small.jpg",
            400,
            Some("segment"),
        ),
        ("/img/w=100,gravity=face/ok/small.jpg", 400, Some("gravity")),
        ("/img/w=100/missing.jpg", 404, Some("path")),
        ("/img/w=100/bad/text.jpg", 415, Some("source")),
        ("/img/w=100/bad/cut.jpg", 422, Some("source")),
        ("/img/w=100/../secret.jpg", 404, None),
    ];
    for (path, status, field) in table {
        let response = get(&stack, path, LEGACY).await;
        assert_eq!(response.status(), status, "{path}: {}", stack.edge.log());
        if status != 404 || field.is_some() {
            let body: protocol::ErrorBody = response.json().await.unwrap();
            assert_eq!(body.error.field.as_deref(), field, "{path}");
        }
    }
    let message = |body: protocol::ErrorBody| body.error.message;
    let progressive = get(&stack, "/img/w=100/bad/progressive.jpg", LEGACY).await;
    assert_eq!(progressive.status(), 422, "{}", stack.edge.log());
    let text = message(progressive.json().await.unwrap());
    assert!(text.contains("progressive JPEG"), "{text}");

    // An 11 MP output (enlarged into a 4096×4096 box) would take the transform past the
    // 128 MiB cap: refused with what it needs, and the isolate goes on serving.
    let huge = get(
        &stack,
        "/img/w=4096,h=4096,fit=contain/big/wide.jpg",
        WEBP_ONLY,
    )
    .await;
    assert_eq!(huge.status(), 422, "{}", stack.edge.log());
    let text = message(huge.json().await.unwrap());
    assert!(text.contains("smaller width"), "{text}");
    let fine = get(&stack, "/img/w=1200/big/wide.jpg", WEBP_ONLY).await;
    assert_eq!(fine.status(), 200, "{}", stack.edge.log());

    // Cloudflare's orientation and filter options, in workerd: rotate's width is the
    // rotated image's, saturation=0 is grey; a box above the cap is the source's size
    // where the fit never enlarges; squeeze fills the box.
    for (path, size) in [
        (
            "/img/w=48,rotate=90,flip=h,blur=5,sharpen=1,saturation=0/ok/small.jpg",
            (48, 96),
        ),
        ("/img/w=5000/ok/small.jpg", (200, 100)),
        ("/img/w=100,h=100,fit=squeeze/ok/small.jpg", (100, 100)),
    ] {
        let response = get(&stack, path, LEGACY).await;
        assert_eq!(response.status(), 200, "{path}: {}", stack.edge.log());
        assert_eq!(header(&response, "content-type"), "image/jpeg", "{path}");
        let picture = image::load_from_memory(&response.bytes().await.unwrap())
            .unwrap()
            .to_rgb8();
        assert_eq!((picture.width(), picture.height()), size, "{path}");
        if path.contains("saturation=0") {
            let grey = picture
                .pixels()
                .all(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap() <= 4);
            assert!(grey, "{path}: saturation=0 left colour");
        }
    }

    let redirect = get(&stack, "/img/w=100,onerror=redirect/bad/cut.jpg", LEGACY).await;
    assert_eq!(redirect.status(), 302);
    assert_eq!(header(&redirect, "location"), "/media/bad/cut.jpg");
    let original = get(&stack, "/media/ok/small.jpg", LEGACY).await;
    assert_eq!(original.bytes().await.unwrap().to_vec(), jpeg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_and_the_width_allow_list() {
    let secret = "a-signing-secret-of-at-least-32-chars!";
    let options = EdgeOptions::default()
        .object("ok/small.jpg", photo(400, 200))
        .secret("IMAGE_SIGNING_KEY", secret)
        .var("IMAGE_WIDTHS", "100,200");
    let stack = Stack::start_with(options).await;
    let sign = |options: &str| {
        let parsed = course_edge_worker::image::options::ImageOptions::parse(options).unwrap();
        course_edge_worker::image::sign::sign(secret.as_bytes(), "ok/small.jpg", &parsed.options)
    };
    let sig = sign("w=100");
    let signed = get(
        &stack,
        &format!("/img/width=100,sig={sig}/ok/small.jpg"),
        LEGACY,
    )
    .await;
    assert_eq!(signed.status(), 200, "{}", stack.edge.log());
    for path in [
        "/img/w=100/ok/small.jpg".to_owned(),
        format!("/img/w=200,sig={sig}/ok/small.jpg"),
        "/img/w=100,sig=00/ok/small.jpg".to_owned(),
    ] {
        let response = get(&stack, &path, LEGACY).await;
        assert_eq!(response.status(), 403, "{path}");
    }
    // A signed URL is the operator's: the allow-lists (IMAGE_WIDTHS here) bind only
    // unsigned URLs, which a signing key turns off (signed-or-preset mode).
    let sig = sign("w=150");
    let off_list = get(
        &stack,
        &format!("/img/w=150,sig={sig}/ok/small.jpg"),
        LEGACY,
    )
    .await;
    assert_eq!(off_list.status(), 200);
    assert_eq!(header(&off_list, "x-edge-image-access"), "signed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_40_megapixel_jpeg_stays_inside_the_isolate_memory_cap() {
    let big = photo(8000, 5000);
    let options = EdgeOptions::default().object("big/40mp.jpg", big);
    let stack = Stack::start_with(options).await;
    let response = get(&stack, "/img/w=1200/big/40mp.jpg", CHROME).await;
    assert_eq!(response.status(), 200, "{}", stack.edge.log());
    let peak: u64 = header(&response, "x-edge-memory-peak").parse().unwrap();
    let linear: u64 = header(&response, "x-edge-memory-linear").parse().unwrap();
    eprintln!(
        "40 MP JPEG -> 1200 px WebP: allocator peak {:.1} MiB, linear memory {:.1} MiB; {}",
        peak as f64 / 1048576.0,
        linear as f64 / 1048576.0,
        header(&response, "server-timing")
    );
    assert!(linear < 128 * 1024 * 1024, "linear memory {linear}");
    assert!(peak < 96 * 1024 * 1024, "peak {peak}");
    let body = response.bytes().await.unwrap();
    let decoded = read_header(&body).unwrap();
    assert_eq!((decoded.width, decoded.height), (1200, 750));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_original_never_serves_an_old_derivative_and_versioned_urls_are_immutable() {
    let options = EdgeOptions::default()
        .var("IMAGE_PRESETS", "w100v7:w=100,v=7")
        .var("IMAGE_SOURCE_TTL", "1")
        .object("swap/p.jpg", photo(400, 200));
    let stack = Stack::start_with(options).await;
    let path = "/img/w=100/swap/p.jpg";
    let first = get(&stack, path, LEGACY).await;
    assert_eq!(first.status(), 200, "{}", stack.edge.log());
    let old_etag = header(&first, "etag");
    assert_eq!(
        read_header(&first.bytes().await.unwrap()).unwrap().height,
        50
    );
    assert_eq!(
        header(&get(&stack, path, LEGACY).await, "x-edge-cache"),
        "HIT"
    );

    // A content team replaces the original (a square now): seen once the stored
    // derivative's source version is rechecked (IMAGE_SOURCE_TTL, 1 s here).
    stack.edge.put_object("swap/p.jpg", &photo(300, 300));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut after = None;
    for _ in 0..40 {
        let response = get(&stack, path, LEGACY).await;
        if header(&response, "etag") != old_etag {
            after = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after = after.unwrap_or_else(|| panic!("the new original is never seen"));
    let new_etag = header(&after, "etag");
    assert_eq!(
        read_header(&after.bytes().await.unwrap()).unwrap().height,
        100,
        "a new source ETag is a new derivative"
    );

    // The operator's versioned URL (a preset here; a signed URL alike) is immutable; an
    // unsigned `v=` keeps the image class's lifetimes.
    let versioned = get(&stack, "/img/w100v7/swap/p.jpg", LEGACY).await;
    assert_eq!(versioned.status(), 200);
    assert_eq!(
        header(&versioned, "cache-control"),
        "public, max-age=31536000, stale-if-error=604800, immutable"
    );
    let unsigned = get(&stack, "/img/w=100,v=7/swap/p.jpg", LEGACY).await;
    assert!(!header(&unsigned, "cache-control").contains("immutable"));
    assert_eq!(
        header(&versioned, "etag"),
        new_etag,
        "v= URLs are bound to the source ETag too: the new original's derivative"
    );
}

/// The image queue: AVIF derivatives, and working copies of large JPEGs (every JPEG here:
/// `IMAGE_WORKING_COPY_MIN_BYTES` is 1), which later derivatives decode instead of the
/// original while the copy has the detail they need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_encodes_avif_and_makes_working_copies_that_later_derivatives_use() {
    let options = EdgeOptions::default()
        .object("q/p.jpg", photo(1200, 800))
        .var("IMAGE_WORKING_COPY_MIN_BYTES", "1");
    let stack = Stack::start_with(options).await;
    let path = "/img/w=400/q/p.jpg";
    let first = get(&stack, path, CHROME).await;
    assert_eq!(first.status(), 200, "{}", stack.edge.log());
    assert_eq!(header(&first, "content-type"), "image/webp", "WebP at once");
    assert_eq!(header(&first, "x-edge-avif"), "queued");
    assert_eq!(header(&first, "cache-control"), "public, max-age=60");
    assert_eq!(header(&first, "x-edge-working-copy"), "queued");
    let etag = header(&get(&stack, "/media/q/p.jpg", LEGACY).await, "etag");
    let copy_key = course_edge_worker::image::key::DerivativeKey::working_copy("q/p.jpg", &etag);
    let mut copy = None;
    for _ in 0..120 {
        copy = stack.edge.get_object(&copy_key);
        if copy.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let copy = copy.unwrap_or_else(|| panic!("no working copy after 60 s\n{}", stack.edge.log()));
    let copy_header = read_header(&copy).unwrap();
    assert_eq!(copy_header.format, SourceFormat::Jpeg);
    assert_eq!(
        (copy_header.width, copy_header.height),
        (600, 400),
        "1/2 DCT scale"
    );
    assert_eq!(copy_header.progressive_coefficient_bytes, None, "baseline");
    // A new width within the copy's detail is made from it, to the original's geometry.
    for (options, used, size) in [
        ("w=300", "used", (300, 200)),
        ("w=600,h=300,fit=cover", "used", (600, 300)),
        ("w=700", "lacks-detail", (700, 467)),
    ] {
        let later = get(&stack, &format!("/img/{options}/q/p.jpg"), LEGACY).await;
        assert_eq!(later.status(), 200, "{options}\n{}", stack.edge.log());
        assert_eq!(header(&later, "x-edge-working-copy"), used, "{options}");
        assert!(
            header(&later, "server-timing").contains("copy;dur="),
            "{options}"
        );
        let picture = image::load_from_memory(&later.bytes().await.unwrap()).unwrap();
        assert_eq!((picture.width(), picture.height()), size, "{options}");
    }

    // An upload through the edge queues the copy itself: the first derivative a browser
    // asks for is already made from it.
    let uploaded = course_edge_e2e::client()
        .put(stack.edge.url("/admin/media/q/uploaded.jpg"))
        .header(
            "authorization",
            format!("Bearer {}", course_edge_e2e::TEST_UPLOAD_TOKEN),
        )
        .body(photo(1200, 800))
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201, "{}", stack.edge.log());
    let stored: serde_json::Value = uploaded.json().await.unwrap();
    assert_eq!(stored["working_copy_queued"], true, "{stored}");
    let etag = stored["etag"].as_str().unwrap().to_owned();
    let copy_key =
        course_edge_worker::image::key::DerivativeKey::working_copy("q/uploaded.jpg", &etag);
    let mut waited = 0;
    while stack.edge.get_object(&copy_key).is_none() {
        waited += 1;
        assert!(
            waited < 120,
            "no working copy 60 s after the upload\n{}",
            stack.edge.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let first = get(&stack, "/img/w=500/q/uploaded.jpg", LEGACY).await;
    assert_eq!(first.status(), 200, "{}", stack.edge.log());
    assert_eq!(header(&first, "x-edge-working-copy"), "used");

    let mut avif = None;
    for _ in 0..120 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let response = get(&stack, path, CHROME).await;
        if header(&response, "content-type") == "image/avif" {
            avif = Some(response.bytes().await.unwrap().to_vec());
            break;
        }
    }
    let avif = avif.unwrap_or_else(|| panic!("no AVIF after 60 s\n{}", stack.edge.log()));
    assert_eq!(&avif[4..12], b"ftypavif");
    // A browser without AVIF still gets its own format.
    let legacy = get(&stack, path, LEGACY).await;
    assert_eq!(header(&legacy, "content-type"), "image/jpeg");

    // An explicit format=avif on a miss is answered at once with WebP (Cloudflare's
    // documented fallback), kept briefly, while the queue encodes the AVIF; never a 503.
    let explicit_path = "/img/w=300,f=avif/q/p.jpg";
    let explicit = get(&stack, explicit_path, LEGACY).await;
    assert_eq!(explicit.status(), 200, "{}", stack.edge.log());
    assert_eq!(header(&explicit, "content-type"), "image/webp");
    assert_eq!(header(&explicit, "x-edge-avif"), "queued");
    assert!(
        header(&explicit, "cache-control").contains("max-age=60"),
        "{}",
        header(&explicit, "cache-control")
    );
    let bytes = explicit.bytes().await.unwrap();
    assert_eq!(&bytes[8..12], b"WEBP");
    let mut named = None;
    for _ in 0..120 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let response = get(&stack, explicit_path, LEGACY).await;
        if header(&response, "content-type") == "image/avif" {
            named = Some(response.bytes().await.unwrap().to_vec());
            break;
        }
    }
    let named =
        named.unwrap_or_else(|| panic!("no AVIF for f=avif after 60 s\n{}", stack.edge.log()));
    assert_eq!(&named[4..12], b"ftypavif");
}

/// A JPEG whose EXIF says: stored rotated (orientation 6), a copyright and an artist.
fn photo_with_exif(width: u32, height: u32) -> Vec<u8> {
    use exif::{Tag, Value};
    with_exif(
        photo(width, height),
        &[
            (Tag::Orientation, Value::Short(vec![6])),
            (
                Tag::Copyright,
                Value::Ascii(vec![b"(c) 2026 Course Co".to_vec()]),
            ),
            (Tag::Artist, Value::Ascii(vec![b"Ada".to_vec()])),
        ],
    )
}

fn exif_text(bytes: &[u8], tag: exif::Tag) -> Option<String> {
    let exif = exif::Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .ok()?;
    exif.get_field(tag, exif::In::PRIMARY)
        .map(|f| f.display_value().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_none_copyright_and_keep_decide_what_exif_reaches_the_derivative() {
    let options = EdgeOptions::default().object("exif/portrait.jpg", photo_with_exif(300, 200));
    let stack = Stack::start_with(options).await;

    // (path, accept, format, copyright kept, artist kept)
    let table = [
        (
            "/img/w=100/exif/portrait.jpg",
            WEBP_ONLY,
            SourceFormat::Webp,
            false,
            false,
        ),
        (
            "/img/w=100,metadata=copyright/exif/portrait.jpg",
            WEBP_ONLY,
            SourceFormat::Webp,
            true,
            false,
        ),
        (
            "/img/w=100,metadata=copyright/exif/portrait.jpg",
            LEGACY,
            SourceFormat::Jpeg,
            true,
            false,
        ),
        (
            "/img/w=100,metadata=keep/exif/portrait.jpg",
            WEBP_ONLY,
            SourceFormat::Webp,
            true,
            true,
        ),
        (
            "/img/w=100,metadata=keep,f=png/exif/portrait.jpg",
            LEGACY,
            SourceFormat::Png,
            true,
            true,
        ),
    ];
    for (path, accept, format, copyright, artist) in table {
        let response = get(&stack, path, accept).await;
        assert_eq!(response.status(), 200, "{path}: {}", stack.edge.log());
        let bytes = response.bytes().await.unwrap().to_vec();
        let head = read_header(&bytes).unwrap();
        assert_eq!(head.format, format, "{path}");
        // Orientation 6 was applied: the 300×200 original is a 200×300 portrait.
        assert_eq!((head.width, head.height), (100, 150), "{path}");
        let text = exif_text(&bytes, exif::Tag::Copyright);
        assert_eq!(text.is_some(), copyright, "{path}: copyright {text:?}");
        if copyright {
            assert!(text.unwrap().contains("2026 Course Co"), "{path}");
        }
        assert_eq!(
            exif_text(&bytes, exif::Tag::Artist).is_some(),
            artist,
            "{path}"
        );
        if artist {
            // Kept EXIF must not make a viewer rotate the upright pixels again.
            let exif = exif::Reader::new()
                .read_from_container(&mut Cursor::new(&bytes))
                .unwrap();
            let orientation = exif
                .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
                .and_then(|f| f.value.get_uint(0));
            assert_eq!(orientation, Some(1), "{path}");
        }
    }
    let bad = get(&stack, "/img/w=100,metadata=all/exif/portrait.jpg", LEGACY).await;
    assert_eq!(bad.status(), 400);
    let body: protocol::ErrorBody = bad.json().await.unwrap();
    assert_eq!(body.error.field.as_deref(), Some("metadata"));
}

/// A real animated GIF: 1.5 s of the demo lesson video at 8 frames a second, 240 px
/// wide, made by ffmpeg (scripts/setup installs it and fetches the video).
fn lesson_gif() -> Vec<u8> {
    let video = course_edge_e2e::fixtures::real_dir().join("lesson.webm");
    let out = tempfile::Builder::new().suffix(".gif").tempfile().unwrap();
    let made = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&video)
        .args(["-t", "1.5", "-vf", "fps=8,scale=240:-1"])
        .arg(out.path())
        .status()
        .unwrap_or_else(|e| panic!("ffmpeg ({e}): run scripts/setup"));
    assert!(made.success(), "ffmpeg made no GIF of {}", video.display());
    std::fs::read(out.path()).unwrap()
}

/// The frames of an animated WebP or GIF: count and size.
fn animation_of(bytes: &[u8]) -> (usize, (u32, u32)) {
    use image::AnimationDecoder;
    let frames: Vec<image::Frame> = if bytes.starts_with(b"GIF") {
        image::codecs::gif::GifDecoder::new(Cursor::new(bytes))
            .unwrap()
            .into_frames()
            .collect_frames()
            .unwrap()
    } else {
        image::codecs::webp::WebPDecoder::new(Cursor::new(bytes))
            .unwrap()
            .into_frames()
            .collect_frames()
            .unwrap()
    };
    match frames.first() {
        Some(first) => (frames.len(), first.buffer().dimensions()),
        // A still WebP has no animation frames.
        None => (1, size_of(bytes)),
    }
}

/// A GET with request headers (client hints).
async fn get_hinted(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = course_edge_e2e::client()
        .get(stack.edge.url(path))
        .header("accept", WEBP_ONLY);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A gradient on a white frame `pad` wide.
fn framed_png(inner: (u32, u32), pad: u32) -> Vec<u8> {
    let (w, h) = (inner.0 + 2 * pad, inner.1 + 2 * pad);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let inside = (pad..pad + inner.0).contains(&x) && (pad..pad + inner.1).contains(&y);
        if inside {
            image::Rgb([(x * 200 / w) as u8, (y * 200 / h) as u8, 90])
        } else {
            image::Rgb([255, 255, 255])
        }
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn size_of(bytes: &[u8]) -> (u32, u32) {
    let h = read_header(bytes).unwrap();
    (h.width, h.height)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_crop_trim_border_json_and_client_hints_in_workerd() {
    let small = photo(200, 100);
    let options = EdgeOptions::default()
        .object(
            "art/dragon.jpg",
            course_edge_e2e::fixtures::real("firstgeneration.jpg"),
        )
        .object("ok/small.jpg", small.clone())
        .object("ok/wide.jpg", photo(3000, 1500))
        .object("ok/framed.png", framed_png((120, 60), 17))
        .object("anim/lesson.gif", lesson_gif())
        // Trims and borders beyond the listed few are a deployment's choice.
        .var("IMAGE_FILTERS", "any");
    let stack = Stack::start_with(options).await;

    // gravity=auto: the dragon's head (marked on the photo: x 1902–2935 of 3640) is kept
    // whole, where the centre crop of the same box cuts it (x 1020–2620).
    let centre = get(
        &stack,
        "/img/w=400,h=600,fit=cover/art/dragon.jpg",
        WEBP_ONLY,
    )
    .await;
    assert_eq!(centre.status(), 200, "{}", stack.edge.log());
    assert_eq!(header(&centre, "x-edge-region"), "1020,0,1600,2400");
    let auto = get(
        &stack,
        "/img/w=400,h=600,fit=cover,g=auto/art/dragon.jpg",
        WEBP_ONLY,
    )
    .await;
    assert_eq!(auto.status(), 200, "{}", stack.edge.log());
    let region: Vec<u32> = header(&auto, "x-edge-region")
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        region[0] <= 1902 && region[0] + region[2] >= 2935,
        "{region:?}"
    );
    assert_eq!(size_of(&auto.bytes().await.unwrap()), (400, 600));

    // trim, trim=border and border change the output's size as documented.
    for (path, size) in [
        ("/img/trim=10;20;30;40,f=png/ok/small.jpg", (140, 60)),
        (
            "/img/trim.left=50,trim.width=100,f=png/ok/small.jpg",
            (100, 100),
        ),
        ("/img/trim=border,f=png/ok/framed.png", (120, 60)),
        ("/img/trim=border,w=64,f=png/ok/framed.png", (64, 32)),
        (
            "/img/w=100,border=5,border.color=red,f=png/ok/small.jpg",
            (110, 60),
        ),
    ] {
        let response = get(&stack, path, LEGACY).await;
        assert_eq!(response.status(), 200, "{path}: {}", stack.edge.log());
        let bytes = response.bytes().await.unwrap();
        assert_eq!(size_of(&bytes), size, "{path}");
        if path.contains("border.color=red") {
            let img = image::load_from_memory(&bytes).unwrap().to_rgba8();
            assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0, 255]);
            assert_eq!(img.get_pixel(109, 59).0, [255, 0, 0, 255]);
        }
    }

    // format=json: sizes before and after, the source's type and size; cached like a
    // derivative, and apart from it.
    let path = "/img/w=100,trim=0;0;0;20,f=json/ok/small.jpg";
    let first = get(&stack, path, WEBP_ONLY).await;
    assert_eq!(first.status(), 200, "{}", stack.edge.log());
    assert_eq!(header(&first, "content-type"), "application/json");
    assert_eq!(header(&first, "x-edge-cache"), "MISS");
    let json: serde_json::Value = first.json().await.unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "width": 100, "height": 56,
            "original": {"width": 200, "height": 100, "file_size": small.len(), "format": "image/jpeg"}
        })
    );
    let again = get(&stack, path, WEBP_ONLY).await;
    assert_eq!(header(&again, "x-edge-cache"), "HIT");
    let image_too = get(&stack, "/img/w=100,trim=0;0;0;20/ok/small.jpg", WEBP_ONLY).await;
    assert_eq!(header(&image_too, "content-type"), "image/webp");
    let hashed = get(
        &stack,
        "/img/w=100,f=json,placeholder=thumbhash/ok/small.jpg",
        LEGACY,
    )
    .await;
    assert_eq!(hashed.status(), 200, "{}", stack.edge.log());
    let json: serde_json::Value = hashed.json().await.unwrap();
    let hash = json["thumbhash"].as_str().unwrap();
    assert!((20..=40).contains(&hash.len()), "{hash}");
    let bad = get(
        &stack,
        "/img/w=100,placeholder=thumbhash/ok/small.jpg",
        LEGACY,
    )
    .await;
    assert_eq!(bad.status(), 400);

    // width=auto: the hints choose a ladder width; the answer is the explicit URL's
    // derivative and names the hints in Vary.
    let phone = [("sec-ch-viewport-width", "390"), ("sec-ch-dpr", "2")];
    let hinted = get_hinted(&stack, "/img/w=auto/ok/wide.jpg", &phone).await;
    assert_eq!(hinted.status(), 200, "{}", stack.edge.log());
    let vary = header(&hinted, "vary");
    assert!(vary.starts_with("Accept, Sec-CH-Width"), "{vary}");
    assert!(
        vary.contains("Sec-CH-Viewport-Width") && vary.contains("DPR"),
        "{vary}"
    );
    assert_eq!(size_of(&hinted.bytes().await.unwrap()), (960, 480));
    let explicit = get_hinted(&stack, "/img/w=960/ok/wide.jpg", &[]).await;
    assert_eq!(header(&explicit, "x-edge-cache"), "HIT", "one derivative");
    assert_eq!(header(&explicit, "vary"), "Accept");
    let desktop = get_hinted(&stack, "/img/w=auto/ok/wide.jpg", &[]).await;
    assert_eq!(size_of(&desktop.bytes().await.unwrap()), (1200, 600));

    // Animation: a real animated GIF stays animated, as animated WebP for a WebP
    // browser and as GIF for one without; anim=false gives its first frame.
    let source = animation_of(&lesson_gif());
    assert_eq!(source.1, (240, 135));
    let webp = get(&stack, "/img/w=128/anim/lesson.gif", WEBP_ONLY).await;
    assert_eq!(webp.status(), 200, "{}", stack.edge.log());
    assert_eq!(header(&webp, "content-type"), "image/webp");
    assert_eq!(
        animation_of(&webp.bytes().await.unwrap()),
        (source.0, (128, 72))
    );
    let gif = get(&stack, "/img/w=128/anim/lesson.gif", LEGACY).await;
    assert_eq!(header(&gif, "content-type"), "image/gif");
    assert_eq!(
        animation_of(&gif.bytes().await.unwrap()),
        (source.0, (128, 72))
    );
    let still = get(&stack, "/img/w=128,anim=false/anim/lesson.gif", WEBP_ONLY).await;
    let still = still.bytes().await.unwrap();
    assert_eq!(animation_of(&still), (1, (128, 72)));
    assert!(source.0 >= 10, "{} frames", source.0);

    // slow-connection-quality: q=50 on a 2G connection, q=90 otherwise; the network
    // hints are in Vary either way, and each answer is the explicit quality's derivative.
    let slow = get_hinted(
        &stack,
        "/img/w=300,q=90,scq=low/ok/wide.jpg",
        &[("ect", "2g")],
    )
    .await;
    assert_eq!(slow.status(), 200, "{}", stack.edge.log());
    assert!(header(&slow, "vary").contains("Save-Data, ECT, RTT, Downlink"));
    let slow_bytes = slow.bytes().await.unwrap();
    let fast = get_hinted(
        &stack,
        "/img/w=300,q=90,scq=low/ok/wide.jpg",
        &[("ect", "4g")],
    )
    .await;
    let fast_bytes = fast.bytes().await.unwrap();
    assert!(
        slow_bytes.len() < fast_bytes.len(),
        "{} ≥ {}",
        slow_bytes.len(),
        fast_bytes.len()
    );
    let q50 = get_hinted(&stack, "/img/w=300,q=50/ok/wide.jpg", &[]).await;
    assert_eq!(header(&q50, "x-edge-cache"), "HIT");
    assert_eq!(q50.bytes().await.unwrap(), slow_bytes);
}
