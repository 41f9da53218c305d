//! The security review's findings, end to end in workerd, on one shared stack: the memory
//! model's tightest cases (16-bit PNG, EXIF orientation 5/7 at full size) never trap the
//! isolate, scan bombs and oversized GIF frames are refused, non-images are never read or
//! queued for AVIF, `background` is part of the derivative, `v=` cannot pre-poison a
//! version, the derivative policy and presets, the `derived/` sweeper, percent-encoded
//! redirects, and uploaded active content served as a sandboxed attachment.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use course_edge_e2e::fixtures::{photo, png_with_alpha, with_exif};
use course_edge_e2e::{EdgeOptions, Stack, client, get_accepting as get, header};
use course_edge_worker::image::decode::read_header;
use course_edge_worker::image::format::OutputFormat;
use course_edge_worker::image::limits::Limits;
use course_edge_worker::image::options::ImageOptions;
use course_edge_worker::image::{TransformError, prepare};

const LEGACY: &str = "*/*";
const CHROME: &str = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";

async fn error_of(response: reqwest::Response) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let body: protocol::ErrorBody = response.json().await.unwrap();
    (status, body.error.field, body.error.message)
}

/// A flat 16-bit RGBA PNG: 140 KB that decodes to 12 bytes a pixel.
fn png16(side: u32) -> Vec<u8> {
    let img = image::ImageBuffer::<image::Rgba<u16>, Vec<u16>>::from_pixel(
        side,
        side,
        image::Rgba([40_000, 20_000, 9_000, 65_535]),
    );
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn oriented(side: u32, orientation: u16) -> Vec<u8> {
    with_exif(
        photo(side, side),
        &[(
            exif::Tag::Orientation,
            exif::Value::Short(vec![orientation]),
        )],
    )
}

/// A baseline JPEG with `extra` empty scans before its real one: what the header walk
/// counts. (A real bomb has valid tiny AC scans; the walk refuses it the same way.)
fn scan_bomb(extra: usize) -> Vec<u8> {
    let jpeg = photo(64, 64);
    let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut out = jpeg[..sos].to_vec();
    for _ in 0..extra {
        out.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
    }
    out.extend_from_slice(&jpeg[sos..]);
    out
}

/// A GIF whose logical screen is 1×1 and whose first frame is `side × side`.
fn gif_with_big_frame(side: u16) -> Vec<u8> {
    let palette = [0u8, 0, 0, 255, 255, 255];
    let mut out = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut out, 1, 1, &palette).unwrap();
        let frame = gif::Frame {
            width: side,
            height: side,
            buffer: vec![1u8; usize::from(side) * usize::from(side)].into(),
            ..gif::Frame::default()
        };
        encoder.write_frame(&frame).unwrap();
    }
    out
}

/// What the model says natively about `bytes` at `options` (the same code as the worker).
fn model(bytes: &[u8], options: &str) -> Result<u64, TransformError> {
    let options = ImageOptions::parse(options).unwrap().options;
    prepare(bytes, &options, OutputFormat::Webp, &Limits::default()).map(|p| p.footprint.bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reviews_findings_stay_fixed_in_workerd() {
    let tight_png = png16(3400);
    let tight_jpeg = oriented(3000, 5);
    let transverse = oriented(2600, 7);
    let options = EdgeOptions::default()
        .var("IMAGE_PRESETS", "thumb:w=100,h=100,fit=cover")
        .var("IMAGE_SOURCE_TTL", "1")
        .object("tight/png16.png", tight_png.clone())
        .object("tight/o5.jpg", tight_jpeg.clone())
        .object("tight/o7.jpg", transverse.clone())
        .object("bomb/scans.jpg", scan_bomb(400))
        .object("bomb/frame.gif", gif_with_big_frame(6000))
        .object("video/seg.mp4", vec![0u8; 4096])
        .object("art/logo.png", png_with_alpha(200, 100))
        .object("ver/p.jpg", photo(400, 200))
        .object("ok/p.jpg", photo(400, 200))
        .object("sweep/gone.jpg", photo(300, 200))
        .object("sweep/kept.jpg", photo(300, 200))
        .object("odd/a(1)!.jpg", b"not an image".to_vec())
        .object(
            "up/x.svg",
            b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec(),
        );
    let stack = Stack::start_with(options).await;
    let log = || stack.edge.log();

    // 1. The tightest memory cases: what the model accepts completes under 128 MiB
    //    (allocator peak within the model), what it refuses is a 422, never a trap.
    for (path, bytes, options) in [
        ("/img/f=webp/tight/png16.png", &tight_png, "f=webp"),
        ("/img/f=webp/tight/o5.jpg", &tight_jpeg, "f=webp"),
        ("/img/f=webp/tight/o7.jpg", &transverse, "f=webp"),
        ("/img/w=1200/tight/png16.png", &tight_png, "w=1200"),
    ] {
        let response = get(&stack, path, LEGACY).await;
        match model(bytes, options) {
            Ok(bound) => {
                assert_eq!(response.status(), 200, "{path}: {}", log());
                let peak: u64 = header(&response, "x-edge-memory-peak").parse().unwrap();
                assert!(peak <= bound, "{path}: peak {peak} over the model {bound}");
                let linear: u64 = header(&response, "x-edge-memory-linear").parse().unwrap();
                eprintln!("{path}: allocator peak {peak}, model {bound}, linear memory {linear}");
                assert!(linear <= 128 * 1024 * 1024, "{path}: {linear}");
            }
            Err(TransformError::TooLarge(_)) => {
                eprintln!("{path}: refused by the model");
                let (status, field, message) = error_of(response).await;
                assert_eq!(
                    (status, field.as_deref()),
                    (422, Some("source")),
                    "{path}: {message}"
                );
            }
            Err(e) => panic!("{path}: {e}"),
        }
    }
    let ok = get(&stack, "/img/w=100/ok/p.jpg", LEGACY).await;
    assert_eq!(ok.status(), 200, "the isolate still serves: {}", log());

    // 2. A scan bomb is refused from the header walk, before decoding.
    let (status, _, message) =
        error_of(get(&stack, "/img/w=100/bomb/scans.jpg", LEGACY).await).await;
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("scans"), "{message}");

    // 3. A 1×1 canvas with a 36 MP frame: the limits see the frame.
    let (status, _, message) =
        error_of(get(&stack, "/img/w=100/bomb/frame.gif", LEGACY).await).await;
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("pixels"), "{message}");

    // 4. A video segment asked as an AVIF image with ever-new versions: refused from its
    //    declared type before any read, and nothing is queued.
    for v in 1..=3 {
        let response = get(&stack, &format!("/img/w=100,v={v}/video/seg.mp4"), CHROME).await;
        assert!(response.headers().get("x-edge-avif").is_none());
        let (status, field, message) = error_of(response).await;
        assert_eq!(
            (status, field.as_deref()),
            (415, Some("source")),
            "{message}"
        );
    }

    // 5. `background` is part of the derivative: black and white flattenings differ.
    let black = get(&stack, "/img/w=200,f=jpeg,bg=black/art/logo.png", LEGACY).await;
    let white = get(&stack, "/img/w=200,f=jpeg/art/logo.png", LEGACY).await;
    assert_eq!(
        (black.status().as_u16(), white.status().as_u16()),
        (200, 200),
        "{}",
        log()
    );
    assert_ne!(header(&black, "etag"), header(&white, "etag"));
    let first_pixel = |bytes: &[u8]| {
        image::load_from_memory(bytes)
            .unwrap()
            .to_rgb8()
            .get_pixel(0, 0)
            .0
    };
    let (b, w) = (
        first_pixel(&black.bytes().await.unwrap()),
        first_pixel(&white.bytes().await.unwrap()),
    );
    assert!(
        b[0] < 40 && w[0] > 215,
        "transparent corner over black {b:?}, over white {w:?}"
    );

    // 6. `v=` cannot pre-poison: asking v=8 before version 8 exists stores nothing that
    //    version 8 will be served from.
    let early = get(&stack, "/img/w=100,v=8/ver/p.jpg", LEGACY).await;
    assert!(
        !header(&early, "cache-control").contains("immutable"),
        "an unsigned v= is not the operator's promise"
    );
    assert_eq!(
        read_header(&early.bytes().await.unwrap()).unwrap().height,
        50
    );
    stack.edge.put_object("ver/p.jpg", &photo(300, 300));
    // Seen once the source version is rechecked (IMAGE_SOURCE_TTL, 1 s here): the
    // early answer was filed under the old ETag, never as version 8.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut height = 0;
    for _ in 0..40 {
        let real = get(&stack, "/img/w=100,v=8/ver/p.jpg", LEGACY).await;
        height = read_header(&real.bytes().await.unwrap()).unwrap().height;
        if height == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(height, 100, "{}", log());

    // 7. The derivative policy: the computed box, not the option, against the lists;
    //    presets; `v=` never mints a new derivative.
    for (path, field) in [
        ("/img/w=801/ok/p.jpg", "width"),
        ("/img/w=400,dpr=1.7/ok/p.jpg", "width"),
        ("/img/w=100,q=81/ok/p.jpg", "quality"),
        ("/img/w=100,bg=123456/ok/p.jpg", "background"),
        ("/img/nope/ok/p.jpg", "preset"),
    ] {
        let (status, got, message) = error_of(get(&stack, path, LEGACY).await).await;
        assert_eq!(
            (status, got.as_deref()),
            (400, Some(field)),
            "{path}: {message}"
        );
    }
    let thumb = get(&stack, "/img/thumb/ok/p.jpg", LEGACY).await;
    assert_eq!(thumb.status(), 200, "{}", log());
    assert_eq!(header(&thumb, "x-edge-image-access"), "preset");
    let thumb = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (100, 100));
    let plain = get(&stack, "/img/w=100/ok/p.jpg", LEGACY).await;
    let versioned = get(&stack, "/img/w=100,v=abc/ok/p.jpg", LEGACY).await;
    // The same stored entry answers: a hit, or — once IMAGE_SOURCE_TTL (1 s here) has
    // passed since the source was last checked — that entry served stale while it is
    // rechecked, or revalidated. A MISS would mean `v=` minted a new derivative.
    let cache = header(&versioned, "x-edge-cache");
    assert!(
        matches!(cache.as_str(), "HIT" | "STALE" | "REVALIDATED"),
        "v= is not part of the derivative ({cache}): {}",
        log()
    );
    assert_eq!(header(&plain, "etag"), header(&versioned, "etag"));

    // 8. The sweeper: a derivative of a replaced source goes, one of a live source stays.
    let gone = get(&stack, "/img/w=100/sweep/gone.jpg", LEGACY).await;
    let kept = get(&stack, "/img/w=100/sweep/kept.jpg", LEGACY).await;
    let (gone_key, kept_key) = (
        header(&gone, "x-edge-derivative"),
        header(&kept, "x-edge-derivative"),
    );
    assert!(gone_key.starts_with("derived/") && kept_key.starts_with("derived/"));
    let stored = |key: &str| stack.edge.get_object(key).is_some();
    for _ in 0..50 {
        if stored(&gone_key) && stored(&kept_key) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        stored(&gone_key) && stored(&kept_key),
        "derivatives stored: {}",
        log()
    );
    // A new upload: the old derivative's key (with the old ETag) can never be asked again.
    stack.edge.put_object("sweep/gone.jpg", &photo(10, 10));
    let swept = client()
        .get(stack.edge.url("/__scheduled?cron=*/30+*+*+*+*"))
        .send()
        .await
        .unwrap();
    assert!(swept.status().is_success(), "{}", log());
    assert!(
        !stored(&gone_key),
        "a derivative of a replaced source is deleted: {}",
        log()
    );
    assert!(stored(&kept_key), "a derivative of a live source stays");

    // 9. onerror=redirect builds its Location from the key, segment by segment, and it
    //    leads back to the same object (keys with spaces, non-Latin-1, `?`, `#` or `%`
    //    are covered natively and by the route fuzz target: wrangler's local R2 CLI
    //    mangles such keys on upload).
    let redirect = get(
        &stack,
        "/img/w=100,onerror=redirect/odd/a%281%29%21.jpg",
        LEGACY,
    )
    .await;
    assert_eq!(redirect.status(), 302, "{}", log());
    let location = header(&redirect, "location");
    assert_eq!(location, "/media/odd/a(1)!.jpg");
    let original = get(&stack, &location, LEGACY).await;
    assert_eq!(original.bytes().await.unwrap().as_ref(), b"not an image");

    // 10. Uploaded active content is a sandboxed attachment; everything is nosniff.
    let svg = get(&stack, "/media/up/x.svg", LEGACY).await;
    assert_eq!(svg.status(), 200);
    assert_eq!(header(&svg, "content-disposition"), "attachment");
    assert_eq!(header(&svg, "content-security-policy"), "sandbox");
    assert_eq!(header(&svg, "x-content-type-options"), "nosniff");
    let jpeg = get(&stack, "/media/ok/p.jpg", LEGACY).await;
    assert_eq!(header(&jpeg, "x-content-type-options"), "nosniff");
    assert!(jpeg.headers().get("content-disposition").is_none());
}
