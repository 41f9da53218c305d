use super::*;
use crate::image::decode::DecodeCost;
use crate::image::testing;
use crate::image::transform;

fn limits() -> Limits {
    Limits {
        working_copy_min_bytes: 1,
        ..Limits::default()
    }
}

fn opts(s: &str) -> ImageOptions {
    ImageOptions::parse(s)
        .unwrap_or_else(|e| panic!("{s}: {e:?}"))
        .options
}

fn jpeg_header(width: u32, height: u32, coefficients: Option<u64>) -> Header {
    Header {
        format: SourceFormat::Jpeg,
        width,
        height,
        progressive_coefficient_bytes: coefficients,
        scales_on_decode: true,
        cost: DecodeCost {
            native: 3,
            working: 7,
            is_rgba8: false,
        },
        frame: None,
        metadata_bytes: 0,
    }
}

/// Decoded RGBA of an encoded image.
fn pixels(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let header = decode::read_header(bytes).unwrap();
    let d = decode::decode(bytes, &header, (header.width, header.height)).unwrap();
    (d.width, d.height, d.rgba)
}

#[test]
fn the_copy_is_the_largest_dct_scale_whose_making_fits_the_budget() {
    let limits = Limits::default();
    // The benchmark's 17.9 MP, 16 MB progressive photo (4:2:2: 560,167 blocks of 128
    // bytes): 1/2 scale would need about 133 MiB, 1/4 about 101 MiB.
    let elephants = jpeg_header(5640, 3172, Some(560_167 * 128));
    let (size, footprint) = plan(&elephants, 16_378_000, &limits).unwrap();
    assert_eq!(size, (1410, 793));
    assert!(limits.check_memory(&footprint).is_ok());
    // A 9 MP, 8.9 MB progressive photo (4:2:0): 1/2 scale fits.
    let rhythm = jpeg_header(3840, 2400, Some(216_000 * 128));
    assert_eq!(plan(&rhythm, 8_900_000, &limits).unwrap().0, (1920, 1200));
    // Whatever the size, the choice is the largest scale that fits: the one above it
    // does not.
    for (w, h, coefficients, bytes) in [
        (8000, 6000, None, 20_000_000),
        (6000, 4000, Some(6000 * 4000 * 3), 8_000_000),
        (4000, 3000, None, 4_000_000),
        (12_000, 4000, None, 30_000_000),
    ] {
        let header = jpeg_header(w, h, coefficients);
        let (size, _) = plan(&header, bytes, &limits).unwrap();
        let eighths = (size.0 * 8).div_ceil(w);
        assert!([1, 2, 4].contains(&eighths), "{w}x{h}: {size:?}");
        if eighths < 4 {
            let larger = decode::jpeg_scaled_size((w, h), (size.0 * 2, size.1 * 2));
            let over = Footprint {
                decoded: larger,
                output: larger,
                ..plan(&header, bytes, &limits).unwrap().1
            };
            assert!(
                limits.check_memory(&over).is_err(),
                "{w}x{h}: 2x{size:?} fits"
            );
        }
    }
}

#[test]
fn small_unscalable_and_non_jpeg_sources_get_no_copy() {
    let limits = Limits::default();
    let big = jpeg_header(4000, 3000, None);
    assert!(plan(&big, limits.working_copy_min_bytes, &limits).is_some());
    assert!(plan(&big, limits.working_copy_min_bytes - 1, &limits).is_none());
    let off = Limits {
        working_copy_min_bytes: 0,
        ..Limits::default()
    };
    assert!(plan(&big, 30_000_000, &off).is_none(), "0 turns copies off");
    let lossless = Header {
        scales_on_decode: false,
        ..big
    };
    assert!(plan(&lossless, 30_000_000, &limits).is_none());
    let png = Header {
        format: SourceFormat::Png,
        ..big
    };
    assert!(plan(&png, 30_000_000, &limits).is_none());
    // From an R2 head: size and declared type.
    let min = limits.working_copy_min_bytes;
    assert!(worth_looking(min, "image/jpeg", &limits));
    assert!(worth_looking(min, "", &limits));
    assert!(worth_looking(min, "application/octet-stream", &limits));
    assert!(!worth_looking(min - 1, "image/jpeg", &limits));
    assert!(!worth_looking(min, "image/png", &limits));
    assert!(!worth_looking(u64::MAX, "image/jpeg", &off));
}

#[test]
fn a_derivative_from_the_copy_has_the_original_s_geometry_and_pixels() {
    let original = testing::jpeg_of(1600, 1000);
    let copy = make(&original, &limits()).unwrap().unwrap();
    assert_eq!((copy.original, copy.size), ((1600, 1000), (800, 500)));
    assert_eq!(
        decode::read_header(&copy.bytes)
            .unwrap()
            .progressive_coefficient_bytes,
        None
    );
    for spec in [
        "w=300",
        "h=77",
        "w=500,fit=contain",
        "w=400,h=400,fit=cover",
        "w=200,h=300,fit=cover,g=left",
        "w=399,h=211,fit=crop,g=0.3x0.8",
        "w=350,h=120,fit=pad,bg=red",
        "w=800",
    ] {
        let o = opts(spec);
        let ours = transform_from(
            &copy.bytes,
            copy.original,
            &o,
            OutputFormat::Png,
            &limits(),
            &|| 0.0,
        )
        .unwrap_or_else(|| panic!("{spec}: the copy has the detail"));
        let reference = transform(&original, &o, OutputFormat::Png, &limits(), &|| 0.0).unwrap();
        assert_eq!(
            (ours.width, ours.height),
            (reference.width, reference.height),
            "{spec}"
        );
        let (_, _, a) = pixels(&ours.bytes);
        let (_, _, b) = pixels(&reference.bytes);
        let mean = a
            .iter()
            .zip(&b)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum::<u64>() as f64
            / a.len() as f64;
        assert!(mean < 2.0, "{spec}: mean difference {mean:.2}");
    }
}

#[test]
fn outputs_that_need_more_detail_than_the_copy_come_from_the_original() {
    let original = testing::jpeg_of(1600, 1000);
    let copy = make(&original, &limits()).unwrap().unwrap();
    let from = |spec: &str| {
        transform_from(
            &copy.bytes,
            copy.original,
            &opts(spec),
            OutputFormat::Webp,
            &limits(),
            &|| 0.0,
        )
    };
    assert!(from("w=800").is_some());
    // Up to 1 % short of the need, the copy serves (`decode::tolerated`); past it, not.
    assert!(from("w=808").is_some());
    assert!(from("w=809").is_none());
    assert!(from("w=1600").is_none());
    assert!(from("").is_none(), "the full size");
    assert!(
        from("w=600,h=600,fit=cover").is_none(),
        "600 px of a 500 px-high copy"
    );
    assert!(from("w=500,h=500,fit=cover").is_some());
    // A copy is a DCT-scaled decode already (½ here): the ½-scale shortcut of an
    // original (`decode::jpeg_decode_target`) would make it ¼ of the original at 1.25×,
    // so the copy keeps the factor of two: a 320 px output decodes the whole 800 px copy.
    assert_eq!(from("w=320").unwrap().decoded, (800, 500));
}

#[test]
fn orientation_and_exif_travel_with_the_copy() {
    let original = testing::jpeg_with_exif(320, 200, 6, Some("(c) Course Co"), Some("Ada"));
    let copy = make(&original, &limits()).unwrap().unwrap();
    assert_eq!(copy.size, (160, 100));
    assert_eq!(orient::orientation(&copy.bytes), 6);
    for spec in [
        "w=50",
        "w=40,h=40,fit=cover,g=top,metadata=keep",
        "h=90,metadata=copyright",
    ] {
        let o = opts(spec);
        let ours = transform_from(
            &copy.bytes,
            copy.original,
            &o,
            OutputFormat::Jpeg,
            &limits(),
            &|| 0.0,
        )
        .unwrap_or_else(|| panic!("{spec}"));
        let reference = transform(&original, &o, OutputFormat::Jpeg, &limits(), &|| 0.0).unwrap();
        assert_eq!(
            (ours.width, ours.height),
            (reference.width, reference.height),
            "{spec}"
        );
        assert_eq!(
            metadata::exif_for(&ours.bytes, Metadata::Keep, false),
            metadata::exif_for(&reference.bytes, Metadata::Keep, false),
            "{spec}"
        );
    }
}

#[test]
fn what_is_not_a_copy_of_that_original_is_not_used() {
    let original = testing::jpeg_of(1600, 1000);
    let copy = make(&original, &limits()).unwrap().unwrap();
    let o = opts("w=100");
    let from = |bytes: &[u8], size| {
        transform_from(bytes, size, &o, OutputFormat::Webp, &limits(), &|| 0.0)
    };
    assert!(from(b"not an image", (1600, 1000)).is_none());
    assert!(from(&copy.bytes[..copy.bytes.len() / 3], (1600, 1000)).is_none());
    assert!(from(&testing::png_of(800, 500, false), (1600, 1000)).is_none());
    assert!(
        from(&copy.bytes, (400, 250)).is_none(),
        "larger than its original"
    );
    assert!(from(&copy.bytes, (1600, 1000)).is_some());
}

#[test]
fn making_a_copy_refuses_what_a_transform_refuses() {
    let jpeg = testing::jpeg_of(640, 480);
    assert!(matches!(
        make(&jpeg[..200], &limits()),
        Err(TransformError::Corrupt(_))
    ));
    let tight = Limits {
        max_source_bytes: 100,
        ..limits()
    };
    assert!(matches!(
        make(&jpeg, &tight),
        Err(TransformError::TooLarge(_))
    ));
    assert_eq!(make(&testing::png_of(640, 480, false), &limits()), Ok(None));
    assert!(matches!(
        make(b"<svg/>", &limits()),
        Err(TransformError::Unsupported(_))
    ));
    assert_eq!(
        make(&jpeg, &Limits::default()),
        Ok(None),
        "under the default threshold"
    );
}

#[test]
fn the_original_size_round_trips_through_r2_metadata() {
    assert_eq!(
        size_from_metadata(&size_to_metadata((5640, 3172))),
        Some((5640, 3172))
    );
    for bad in ["", "12", "0x5", "5x0", "ax3", "3x", "-1x4", "1x2x3"] {
        assert_eq!(size_from_metadata(bad), None, "{bad}");
    }
}

#[test]
fn the_sweeper_keeps_a_current_copy_and_deletes_a_replaced_source_s() {
    use crate::image::key::DerivativeKey;
    use crate::image::sweep::{DerivedFrom, Reason, Verdict, verdict};
    let key = DerivativeKey::working_copy("demo/a.jpg", "\"e1\"");
    // What `edge::working::store` records: what it was made from, and the original's size.
    let mut metadata = DerivedFrom::new("demo/a.jpg", "\"e1\"").to_metadata();
    metadata.insert(ORIGINAL_SIZE.to_owned(), size_to_metadata((5640, 3172)));
    let from = DerivedFrom::from_metadata(&metadata);
    assert_eq!(verdict(&key, from.as_ref(), Some("\"e1\"")), Verdict::Keep);
    assert_eq!(
        verdict(&key, from.as_ref(), Some("\"e2\"")),
        Verdict::Delete(Reason::SourceReplaced)
    );
    assert_eq!(
        verdict(&key, from.as_ref(), None),
        Verdict::Delete(Reason::SourceGone)
    );
}
