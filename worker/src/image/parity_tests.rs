//! The pipeline with Cloudflare's `trim`, `border`, `gravity=auto` and `format=json`:
//! every expectation is exact pixels of a lossless output or a region marked on a real
//! photograph.

use super::*;
use crate::image::geometry::Rect;

fn options(spec: &str) -> ImageOptions {
    ImageOptions::parse(spec)
        .unwrap_or_else(|e| panic!("{spec}: {e:?}"))
        .options
}

fn run(bytes: &[u8], spec: &str) -> Output {
    transform(
        bytes,
        &options(spec),
        OutputFormat::Png,
        &Limits::default(),
        &|| 0.0,
    )
    .unwrap_or_else(|e| panic!("{spec}: {e}"))
}

fn pixels(bytes: &[u8]) -> decode::Decoded {
    let header = decode::read_header(bytes).unwrap();
    decode::decode(bytes, &header, (1, 1)).unwrap()
}

fn pixel(image: &decode::Decoded, x: u32, y: u32) -> [u8; 4] {
    let i = ((y * image.width + x) * 4) as usize;
    [
        image.rgba[i],
        image.rgba[i + 1],
        image.rgba[i + 2],
        image.rgba[i + 3],
    ]
}

/// `part` equals `whole`'s pixels from (`x`, `y`) on, turned by `orientation` first.
fn is_part_of(part: &decode::Decoded, whole: &decode::Decoded, x: u32, y: u32) {
    for py in 0..part.height {
        for px in 0..part.width {
            assert_eq!(
                pixel(part, px, py),
                pixel(whole, x + px, y + py),
                "at {px},{py} of {}×{}",
                part.width,
                part.height
            );
        }
    }
}

#[test]
fn trimmed_sides_are_the_source_pixels_they_name() {
    let png = testing::png_of(200, 100, false);
    let source = pixels(&run(&png, "").bytes);
    let out = run(&png, "trim=10;20;30;40");
    assert_eq!((out.width, out.height), (140, 60));
    assert_eq!(
        out.region,
        Rect {
            x: 40,
            y: 10,
            w: 140,
            h: 60
        }
    );
    is_part_of(&pixels(&out.bytes), &source, 40, 10);
    let out = run(&png, "trim.left=5,trim.top=6,trim.width=50,trim.height=20");
    is_part_of(&pixels(&out.bytes), &source, 5, 6);
    assert_eq!((out.width, out.height), (50, 20));
    // dpr scales the trim as it scales the box.
    let out = run(&png, "trim=5;10;15;20,dpr=2");
    assert_eq!((out.width, out.height), (140, 60));
}

#[test]
fn trim_cuts_the_upright_picture_before_rotate_turns_it() {
    // Oracle: trimming the left 50 columns, then turning a quarter clockwise, is the
    // turned picture without its top 50 rows.
    let png = testing::png_of(200, 100, false);
    let turned = pixels(&run(&png, "rotate=90").bytes);
    let out = run(&png, "rotate=90,trim=0;0;0;50");
    assert_eq!((out.width, out.height), (100, 150));
    is_part_of(&pixels(&out.bytes), &turned, 0, 50);
    // And a JPEG's EXIF orientation is applied first: the trim names what is displayed.
    let jpeg = testing::jpeg_with_exif(60, 30, 6, None, None);
    let shown = run(&jpeg, "");
    assert_eq!((shown.width, shown.height), (30, 60));
    let out = run(&jpeg, "trim=10;0;0;0");
    assert_eq!((out.width, out.height), (30, 50));
}

/// `inner` (a gradient) on a `pad`-wide frame of `frame`.
fn framed_png(inner: (u32, u32), pad: u32, frame: [u8; 4]) -> Vec<u8> {
    let gradient = testing::gradient(inner.0, inner.1);
    let (w, h) = (inner.0 + 2 * pad, inner.1 + 2 * pad);
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        let inside = (pad..pad + inner.0).contains(&x) && (pad..pad + inner.1).contains(&y);
        if inside {
            let [r, g, b] = gradient.get_pixel(x - pad, y - pad).0;
            // Never the frame's colour, so the border ends where the picture starts.
            image::Rgba([r.min(200), g.min(200), b, 255])
        } else {
            image::Rgba(frame)
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn trim_border_finds_the_frame_and_plans_on_what_is_left() {
    let png = framed_png((120, 60), 17, [255, 255, 255, 255]);
    let source = pixels(&run(&png, "").bytes);
    let out = run(&png, "trim=border");
    assert_eq!((out.width, out.height), (120, 60));
    is_part_of(&pixels(&out.bytes), &source, 17, 17);
    let out = run(&png, "trim=border,trim.border.keep=3");
    assert_eq!((out.width, out.height), (126, 66));
    // The box is fitted to the trimmed picture's shape (2:1), not the framed one's.
    let out = run(&png, "trim=border,w=60");
    assert_eq!((out.width, out.height), (60, 30));
    // A colour that is not the frame's: nothing is border.
    let out = run(&png, "trim=border,trim.border.color=black");
    assert_eq!((out.width, out.height), (154, 94));
    // A JPEG's frame, with the compression's noise: the default tolerance takes the flat
    // frame; the ringing next to the picture's edge (a few pixels at q85) is kept.
    let jpeg = {
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode_image(&img)
            .unwrap();
        out
    };
    let out = run(&jpeg, "trim=border");
    assert!(
        (120..=128).contains(&out.width) && (60..=68).contains(&out.height),
        "{}×{}",
        out.width,
        out.height
    );
}

#[test]
fn a_border_frames_the_output_in_its_colour() {
    let png = testing::png_of(40, 20, false);
    let source = pixels(&run(&png, "").bytes);
    let out = run(&png, "border=5;10;15;20,border.color=red");
    assert_eq!((out.width, out.height), (70, 40));
    let framed = pixels(&out.bytes);
    for (x, y) in [(0, 0), (69, 39), (19, 4), (60, 25), (25, 36)] {
        assert_eq!(pixel(&framed, x, y), [255, 0, 0, 255], "{x},{y}");
    }
    for y in 0..20 {
        for x in 0..40 {
            assert_eq!(pixel(&framed, x + 20, y + 5), pixel(&source, x, y));
        }
    }
    // After resizing, in output pixels: dpr scales it like the box.
    let out = run(&png, "w=20,border=2,dpr=2");
    assert_eq!((out.width, out.height), (48, 28));
}

/// A region marked by eye on a preview of a real photograph (a grid drawn over an 800 px
/// copy, scaled back to the file's pixels).
struct Marked {
    file: &'static str,
    region: Rect,
}

const DRAGON: Marked = Marked {
    // The dragon's head, right of centre in a 3640×2400 wallpaper.
    file: "firstgeneration.jpg",
    region: Rect {
        x: 1902,
        y: 955,
        w: 1033,
        h: 775,
    },
};

const MOUSE: Marked = Marked {
    // The mouse's eyes and nose, at the centre of a 3840×2400 wallpaper.
    file: "the-mouse.jpg",
    region: Rect {
        x: 1584,
        y: 1008,
        w: 672,
        h: 384,
    },
};

fn keeps(region: Rect, mark: &Rect) -> bool {
    region.x <= mark.x
        && region.y <= mark.y
        && region.x + region.w >= mark.x + mark.w
        && region.y + region.h >= mark.y + mark.h
}

#[test]
fn gravity_auto_keeps_the_subject_a_centre_crop_loses() {
    let bytes = testing::fixture(DRAGON.file);
    for fit in ["cover", "crop"] {
        // Portrait: a crop 0.44 of the width; the centre one cuts the head off.
        let centre = transform(
            &bytes,
            &options(&format!("w=400,h=600,fit={fit}")),
            OutputFormat::Webp,
            &Limits::default(),
            &|| 0.0,
        )
        .unwrap();
        assert!(!keeps(centre.region, &DRAGON.region), "{:?}", centre.region);
        let auto = transform(
            &bytes,
            &options(&format!("w=400,h=600,fit={fit},gravity=auto")),
            OutputFormat::Webp,
            &Limits::default(),
            &|| 0.0,
        )
        .unwrap();
        assert_eq!((auto.width, auto.height), (400, 600));
        assert!(
            keeps(auto.region, &DRAGON.region),
            "{fit}: {:?}",
            auto.region
        );
    }
    // A centred subject stays in a wide strip.
    let bytes = testing::fixture(MOUSE.file);
    let strip = transform(
        &bytes,
        &options("w=800,h=200,fit=cover,g=auto"),
        OutputFormat::Webp,
        &Limits::default(),
        &|| 0.0,
    )
    .unwrap();
    assert!(keeps(strip.region, &MOUSE.region), "{:?}", strip.region);
}

#[test]
fn gravity_auto_is_counted_in_the_footprint() {
    let jpeg = testing::jpeg_of(3000, 2000);
    let plain = prepare(
        &jpeg,
        &options("w=300,h=300,fit=cover"),
        OutputFormat::Webp,
        &Limits::default(),
    )
    .unwrap();
    let auto = prepare(
        &jpeg,
        &options("w=300,h=300,fit=cover,g=auto"),
        OutputFormat::Webp,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        auto.footprint.analysis_scratch,
        saliency::SCRATCH_BYTES,
        "and nothing else differs"
    );
    assert_eq!(
        limits::Footprint {
            analysis_scratch: 0,
            ..auto.footprint
        },
        plain.footprint
    );
}

#[test]
fn json_describes_the_source_and_the_result() {
    let jpeg = testing::jpeg_of(200, 100);
    let d = describe(&jpeg, &options("w=100,f=json"), &Limits::default(), &|| 0.0).unwrap();
    assert_eq!((d.width, d.height), (100, 50));
    assert_eq!(
        d.original,
        Original {
            width: 200,
            height: 100,
            file_size: jpeg.len() as u64,
            format: "image/jpeg",
        }
    );
    assert_eq!(d.thumbhash, None);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["original"]["format"], "image/jpeg");
    assert!(json.get("thumbhash").is_none());
    // The sizes match what the transform makes, for every fit and border.
    for spec in [
        "w=100,h=100,fit=pad,border=3",
        "w=100,h=100,fit=cover",
        "h=30,rotate=90",
        "w=5000,fit=contain",
        "trim=1;2;3;4",
    ] {
        let made = run(&jpeg, spec);
        let d = describe(
            &jpeg,
            &options(&format!("{spec},f=json")),
            &Limits::default(),
            &|| 0.0,
        )
        .unwrap();
        assert_eq!((d.width, d.height), (made.width, made.height), "{spec}");
    }
    // The displayed size of a source with an EXIF orientation.
    let turned = testing::jpeg_with_exif(60, 30, 6, None, None);
    let d = describe(&turned, &options("f=json"), &Limits::default(), &|| 0.0).unwrap();
    assert_eq!((d.original.width, d.original.height), (30, 60));
}

#[test]
fn a_thumbhash_is_of_the_result() {
    use base64::Engine;
    let png = framed_png((160, 80), 20, [255, 255, 255, 255]);
    let d = describe(
        &png,
        &options("trim=border,f=json,placeholder=thumbhash"),
        &Limits::default(),
        &|| 0.0,
    )
    .unwrap();
    // Sized on the pixels: the frame is gone.
    assert_eq!((d.width, d.height), (160, 80));
    let hash = base64::engine::general_purpose::STANDARD
        .decode(d.thumbhash.unwrap())
        .unwrap();
    // The hash paints the result: landscape, the gradient's mean colour, and its
    // top-left corner is the gradient's (0, 0, 128), not the white frame's.
    let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&hash).unwrap();
    assert!(ratio > 1.5, "{ratio}");
    let (r, g, b, a) = thumbhash::thumb_hash_to_average_rgba(&hash).unwrap();
    assert!(
        r < 0.7 && g < 0.7 && (b - 0.5).abs() < 0.1 && a > 0.99,
        "{r} {g} {b} {a}"
    );
    let (w, _, rgba) = thumbhash::thumb_hash_to_rgba(&hash).unwrap();
    assert!(w > 0 && rgba[0] < 90 && rgba[1] < 90, "{:?}", &rgba[..4]);
    let framed = describe(
        &png,
        &options("f=json,placeholder=thumbhash"),
        &Limits::default(),
        &|| 0.0,
    )
    .unwrap();
    let hash = base64::engine::general_purpose::STANDARD
        .decode(framed.thumbhash.unwrap())
        .unwrap();
    let (_, _, rgba) = thumbhash::thumb_hash_to_rgba(&hash).unwrap();
    assert!(
        rgba[0] > 200 && rgba[1] > 200,
        "the frame's corner: {:?}",
        &rgba[..4]
    );
}
