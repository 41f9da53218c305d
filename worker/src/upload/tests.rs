use super::*;
use crate::image::testing::{jpeg_of, jpeg_with_exif, png_of};

fn key(k: &str) -> ObjectKey {
    ObjectKey::parse("", k).unwrap()
}

fn admitted(k: &str, length: usize) -> Admitted {
    admit(&key(k), Some(&length.to_string()), None, DEFAULT_MAX_BYTES).unwrap()
}

fn check(k: &str, bytes: &[u8]) -> Result<Inspected, UploadError> {
    inspect(
        &admitted(k, bytes.len()),
        &bytes[..bytes.len().min(SNIFF_BYTES)],
    )
}

fn webp_of(width: u32, height: u32) -> Vec<u8> {
    let pixels = vec![200u8; (width * height * 3) as usize];
    webp::Encoder::from_rgb(&pixels, width, height)
        .encode(80.0)
        .to_vec()
}

fn gif_of(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let image = image::RgbaImage::from_pixel(width, height, image::Rgba([9, 8, 7, 255]));
    image::codecs::gif::GifEncoder::new(&mut out)
        .encode(
            image.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgba8,
        )
        .unwrap();
    out
}

fn avif_of(width: usize, height: usize) -> Vec<u8> {
    let pixels = vec![ravif::RGB8::new(10, 20, 30); width * height];
    ravif::Encoder::new()
        .with_speed(10)
        .encode_rgb(ravif::Img::new(&pixels[..], width, height))
        .unwrap()
        .avif_file
}

/// An ISO-BMFF `ftyp` box with `major` and `compatible` brands, then a `free` box.
fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
    let size = 16 + 4 * compatible.len();
    let mut out = (size as u32).to_be_bytes().to_vec();
    out.extend_from_slice(b"ftyp");
    out.extend_from_slice(major);
    out.extend_from_slice(&[0, 0, 2, 0]);
    for brand in compatible {
        out.extend_from_slice(*brand);
    }
    out.extend_from_slice(&[0, 0, 0, 8]);
    out.extend_from_slice(b"free");
    out
}

fn ts_packets(n: usize) -> Vec<u8> {
    let mut out = vec![0xFFu8; 188 * n];
    for p in 0..n {
        out[p * 188] = 0x47;
    }
    out
}

/// A key, its bytes, the kind they are, the dimensions they give.
type Case = (&'static str, Vec<u8>, Kind, Option<(u32, u32)>);

#[test]
fn every_accepted_type_is_recognized_by_its_bytes_with_image_dimensions() {
    let cases: Vec<Case> = vec![
        ("a/photo.jpg", jpeg_of(64, 40), Kind::Jpeg, Some((64, 40))),
        ("a/photo.JPEG", jpeg_of(8, 8), Kind::Jpeg, Some((8, 8))),
        ("a/p.png", png_of(33, 17, true), Kind::Png, Some((33, 17))),
        ("a/p.webp", webp_of(30, 20), Kind::Webp, Some((30, 20))),
        ("a/p.gif", gif_of(12, 5), Kind::Gif, Some((12, 5))),
        ("a/p.avif", avif_of(24, 10), Kind::Avif, Some((24, 10))),
        (
            "video/1/movie.mp4",
            ftyp(b"isom", &[b"isom", b"iso2", b"mp41"]),
            Kind::Mp4,
            None,
        ),
        (
            "video/1/init.mp4",
            ftyp(b"iso6", &[b"dash"]),
            Kind::Mp4,
            None,
        ),
        (
            "video/1/seg-1.m4s",
            [&[0, 0, 0, 24][..], b"styp", b"msdhmsdh"].concat(),
            Kind::Fmp4Segment,
            None,
        ),
        ("video/1/seg-1.ts", ts_packets(3), Kind::MpegTs, None),
        (
            "video/1/index.m3u8",
            b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:4.0,\nseg-1.ts\n".to_vec(),
            Kind::Playlist,
            None,
        ),
        (
            "video/1/bom.m3u8",
            b"\xEF\xBB\xBF#EXTM3U\n".to_vec(),
            Kind::Playlist,
            None,
        ),
    ];
    for (k, bytes, kind, dimensions) in cases {
        let got = check(k, &bytes).unwrap_or_else(|e| panic!("{k}: {e}"));
        assert_eq!(got.kind, kind, "{k}");
        assert_eq!(got.dimensions, dimensions, "{k}");
        assert!(kind.extensions().contains(&extension(&key(k)).as_str()));
    }
}

#[test]
fn a_jpeg_turned_by_exif_reports_the_size_it_is_displayed_at() {
    for (orientation, shown) in [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))] {
        let bytes = jpeg_with_exif(40, 20, orientation, None, None);
        assert_eq!(
            check("x.jpg", &bytes).unwrap().dimensions,
            Some(shown),
            "orientation {orientation}"
        );
    }
}

#[test]
fn dimensions_come_from_the_first_bytes_only() {
    // A large JPEG: only its first SNIFF_BYTES are read, and they hold the frame header.
    let big = jpeg_of(1600, 1200);
    assert!(big.len() > 4096);
    let a = admitted("big.jpg", big.len());
    assert_eq!(
        inspect(&a, &big[..4096]).unwrap().dimensions,
        Some((1600, 1200))
    );
    // A header cut before its size fields.
    let png = png_of(10, 10, false);
    assert_eq!(
        inspect(&admitted("p.png", png.len()), &png[..12]),
        Err(UploadError::NoDimensions { kind: "PNG" })
    );
}

#[test]
fn bytes_that_disagree_with_the_key_are_refused_naming_both() {
    let png = png_of(4, 4, false);
    let err = check("photo.jpg", &png).unwrap_err();
    assert_eq!(
        err,
        UploadError::Mismatch {
            extension: String::from("jpg"),
            found: Kind::Png
        }
    );
    assert_eq!(err.status(), 415);
    assert!(err.to_string().contains("name it .png"), "{err}");
    // An MP4 is not an AVIF, and an AVIF named .mp4 is not a movie.
    assert!(check("a.avif", &ftyp(b"isom", &[b"mp41"])).is_err());
    assert!(check("a.mp4", &avif_of(4, 4)).is_err());
}

#[test]
fn svg_html_heif_and_unknown_bytes_are_refused() {
    for svg in [
        &b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"[..],
        b"  <?xml version='1.0'?>\n<svg/>",
        b"<!DOCTYPE svg PUBLIC>",
    ] {
        assert_eq!(check("x.png", svg), Err(UploadError::Svg));
    }
    assert_eq!(
        admit(&key("logo.svg"), Some("10"), None, DEFAULT_MAX_BYTES),
        Err(UploadError::Svg)
    );
    assert_eq!(
        check("x.png", b"<!doctype html><script>"),
        Err(UploadError::NotRecognized)
    );
    assert_eq!(
        check("x.jpg", &ftyp(b"heic", &[b"mif1", b"heic"])),
        Err(UploadError::Heif)
    );
    assert_eq!(check("x.png", b"\0\0\0"), Err(UploadError::NotRecognized));
    for e in [
        UploadError::Svg,
        UploadError::Heif,
        UploadError::NotRecognized,
    ] {
        assert_eq!(e.status(), 415);
        assert_eq!(e.field(), "body");
    }
}

#[test]
fn broken_segments_and_playlists_are_refused() {
    let mut ts = ts_packets(3);
    ts[188] = 0;
    assert_eq!(check("s.ts", &ts), Err(UploadError::BadTransportStream));
    let short = &ts_packets(2)[..300];
    assert_eq!(check("s.ts", short), Err(UploadError::BadTransportStream));
    assert_eq!(
        check("p.m3u8", b"#EXTM3U\n\xFF\xFEseg.ts\n"),
        Err(UploadError::BadPlaylist)
    );
    // A playlist cut inside a multi-byte character is fine until the body is complete.
    let text = "#EXTM3U\n# é".as_bytes();
    let cut = &text[..text.len() - 1];
    let a = admitted("p.m3u8", text.len() + 10);
    assert!(inspect(&a, cut).is_ok());
    let whole = admitted("p.m3u8", cut.len());
    assert_eq!(inspect(&whole, cut), Err(UploadError::BadPlaylist));
    assert_eq!(
        admit(
            &key("p.m3u8"),
            Some(&(MAX_PLAYLIST_BYTES + 1).to_string()),
            None,
            DEFAULT_MAX_BYTES
        ),
        Err(UploadError::BadPlaylist)
    );
}

#[test]
fn keys_lengths_and_checksums_are_checked_before_the_body_is_read() {
    let ok = |k: &str, len: Option<&str>, md5: Option<&str>| admit(&key(k), len, md5, 1000);
    assert_eq!(
        ok("derived/ab/x.webp", Some("10"), None),
        Err(UploadError::ReservedKey { prefix: "derived/" })
    );
    assert_eq!(
        ok("static/app.js", Some("10"), None),
        Err(UploadError::ReservedKey { prefix: "static/" })
    );
    assert!(matches!(
        ok("notes.txt", Some("10"), None),
        Err(UploadError::UnknownExtension { .. })
    ));
    assert!(matches!(
        ok("noext", Some("10"), None),
        Err(UploadError::UnknownExtension { .. })
    ));
    assert_eq!(ok("a.jpg", None, None), Err(UploadError::LengthRequired));
    assert_eq!(
        ok("a.jpg", Some("x"), None),
        Err(UploadError::LengthRequired)
    );
    assert_eq!(ok("a.jpg", Some("0"), None), Err(UploadError::Empty));
    assert_eq!(
        ok("a.jpg", Some("1001"), None),
        Err(UploadError::TooLarge {
            length: 1001,
            limit: 1000
        })
    );
    assert_eq!(
        ok("a.jpg", Some("10"), Some("not base64!")),
        Err(UploadError::BadChecksum)
    );
    assert_eq!(
        ok("a.jpg", Some("10"), Some("AAAA")),
        Err(UploadError::BadChecksum),
        "three bytes are not an MD5"
    );
    let a = ok("a.jpg", Some("1000"), Some("1B2M2Y8AsgTpgAmY7PhCfg==")).unwrap();
    assert_eq!(a.length, 1000);
    assert_eq!(a.expected, Kind::Jpeg);
    assert_eq!(a.md5.map(|d| d[0]), Some(0xd4), "MD5 of the empty string");
    for (e, status, field) in [
        (UploadError::LengthRequired, 411, "content-length"),
        (
            UploadError::TooLarge {
                length: 2,
                limit: 1,
            },
            413,
            "content-length",
        ),
        (UploadError::ReservedKey { prefix: "derived/" }, 400, "key"),
        (UploadError::BadChecksum, 400, "content-md5"),
    ] {
        assert_eq!((e.status(), e.field()), (status, field), "{e}");
    }
}

#[test]
fn the_stored_metadata_names_the_kind_size_and_uploader() {
    let inspected = check("a.png", &png_of(7, 3, false)).unwrap();
    let meta = metadata(&inspected, "content");
    assert_eq!(meta.get(meta::WIDTH).map(String::as_str), Some("7"));
    assert_eq!(meta.get(meta::HEIGHT).map(String::as_str), Some("3"));
    assert_eq!(meta.get(meta::KIND).map(String::as_str), Some("PNG"));
    assert_eq!(
        meta.get(meta::UPLOADED_BY).map(String::as_str),
        Some("content")
    );
    let ts = check("video/a.ts", &ts_packets(1)).unwrap();
    assert!(!metadata(&ts, "x").contains_key(meta::WIDTH));
}

#[test]
fn purges_name_every_url_an_object_is_served_under() {
    assert_eq!(
        purge_urls(&key("demo/a b.jpg")),
        vec![String::from("/media/demo/a%20b.jpg")]
    );
    assert_eq!(
        purge_urls(&key("video/42/index.m3u8")),
        vec![
            String::from("/media/video/42/index.m3u8"),
            String::from("/video/42/index.m3u8")
        ]
    );
    let k = key("demo/a.jpg");
    assert_eq!(purge_id(&k, "v1"), purge_id(&k, "\"v1\""));
    let pending = pending_key(&purge_id(&k, "v1"));
    assert!(pending.starts_with(PENDING_PREFIX) && pending.ends_with(".json"));
    assert!(
        crate::image::sweep::is_internal(&pending),
        "the sweeper never takes an outbox entry for a derivative"
    );
    assert_ne!(purge_id(&k, "v1"), purge_id(&k, "v2"));
    assert_ne!(purge_id(&k, "v1"), purge_id(&key("demo/b.jpg"), "v1"));
}

#[test]
fn put_failures_and_dimension_headers() {
    assert_eq!(
        put_failure("put: The Content-MD5 you specified did not match"),
        Some(UploadError::Corrupted)
    );
    assert_eq!(
        put_failure("fixed length stream had different length than expected"),
        Some(UploadError::Corrupted)
    );
    assert_eq!(
        put_failure("FixedLengthStream did not see all expected bytes before close()"),
        Some(UploadError::Corrupted)
    );
    assert_eq!(put_failure("internal error; reference = 5"), None);
    let inspected = check("a.png", &png_of(7, 3, false)).unwrap();
    assert_eq!(
        dimension_headers(&metadata(&inspected, "x")),
        vec![
            (headers::WIDTH, String::from("7")),
            (headers::HEIGHT, String::from("3"))
        ]
    );
    let forged = HashMap::from([
        (meta::WIDTH.to_owned(), String::from("7\r\nset-cookie: a=b")),
        (meta::HEIGHT.to_owned(), String::from("3")),
    ]);
    assert!(dimension_headers(&forged).is_empty());
}

#[test]
fn a_key_no_purge_could_name_is_refused_before_anything_is_stored() {
    // 500 two-byte characters: a 1004-byte key whose URL escapes to 3004 bytes.
    let long = ObjectKey::parse("", &format!("{}.jpg", "é".repeat(500))).unwrap();
    assert_eq!(
        admit(&long, Some("10"), None, DEFAULT_MAX_BYTES),
        Err(UploadError::KeyTooLong)
    );
    assert_eq!(UploadError::KeyTooLong.field(), "key");
    assert_eq!(UploadError::KeyTooLong.status(), 400);
    let plain = key(&format!("{}.jpg", "a".repeat(1000)));
    assert!(admit(&plain, Some("10"), None, DEFAULT_MAX_BYTES).is_ok());
}

#[test]
fn a_playlist_is_read_whole_and_anything_else_by_its_head() {
    assert_eq!(admitted("p.m3u8", 500_000).sniff_bytes(), 500_000);
    assert_eq!(admitted("a.jpg", 500_000).sniff_bytes(), SNIFF_BYTES);
    assert_eq!(admitted("a.jpg", 10).sniff_bytes(), 10);
}

#[test]
fn an_outbox_entry_waits_for_its_upload_and_its_own_purge_has_another_id() {
    use protocol::purge::{Change, Purge};
    let purge = Purge {
        id: purge_id(&key("a.jpg"), "n1"),
        change: Change {
            urls: purge_urls(&key("a.jpg")),
            ..Change::default()
        },
    };
    let pending = Pending::new(purge.clone(), 1_000.0);
    assert!(!pending.is_due(1_000.0));
    assert!(!pending.is_due(1_000.0 + PENDING_GRACE_MS - 1.0));
    assert!(pending.is_due(1_000.0 + PENDING_GRACE_MS));
    let own = pending.after_store();
    assert_ne!(own.id, purge.id);
    assert_eq!(own.change, purge.change);
    let json = serde_json::to_string(&pending).unwrap();
    assert_eq!(serde_json::from_str::<Pending>(&json).unwrap(), pending);
    // The ledger accepts it as the route would.
    assert!(
        Purge::parse(&serde_json::to_vec(&own).unwrap()).is_ok(),
        "{}",
        own.id
    );
}

#[test]
fn a_new_key_is_created_and_a_replacement_is_ok() {
    assert_eq!(stored_status(false), 201);
    assert_eq!(stored_status(true), 200);
}
