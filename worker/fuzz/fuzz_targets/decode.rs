//! The decode path: arbitrary bytes through the whole transform (header, limits,
//! decode, orientation, resize, encode) must give an image or a classified error,
//! never a panic, within a small pixel budget. The first byte picks the options and the
//! output format (flip/rotate, the pixel filters and metadata=keep/copyright included,
//! so EXIF reading, the orientation reset and the container writers are fuzzed too);
//! the rest is the source.
#![no_main]

use course_edge_worker::image::format::OutputFormat;
use course_edge_worker::image::limits::Limits;
use course_edge_worker::image::describe;
use course_edge_worker::image::options::{Answer, ImageOptions};
use course_edge_worker::image::transform;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_source_pixels: 4_000_000,
        max_unscaled_pixels: 4_000_000,
        ..Limits::default()
    };
    const OPTIONS: [&str; 9] = [
        "w=64,h=64,fit=cover",
        "w=48,metadata=keep",
        "w=32,h=32,fit=pad,metadata=copyright",
        "h=40,fit=scale-down,metadata=keep",
        // flip/rotate composed with the source's EXIF orientation, and every filter.
        "w=40,rotate=90,flip=h,blur=3,sharpen=2,metadata=keep",
        "w=30,h=20,fit=squeeze,brightness=1.5,contrast=2,gamma=0.5,saturation=0",
        "rotate=270,fit=pad,w=24,h=24,blur=250",
        // The border is found on the pixels and the geometry planned again; the crop is
        // placed on them.
        "trim=border,trim.border.keep=1,w=20,border=2,border.color=red",
        "w=30,h=30,fit=cover,g=auto,trim=1;2;3;4,rotate=90",
    ];
    const FORMATS: [OutputFormat; 3] = [OutputFormat::Jpeg, OutputFormat::Webp, OutputFormat::Png];
    let Some((&selector, source)) = data.split_first() else {
        return;
    };
    let options = OPTIONS[usize::from(selector) % OPTIONS.len()];
    let format = FORMATS[usize::from(selector / 4) % FORMATS.len()];
    let Ok(parsed) = ImageOptions::parse(options) else {
        return;
    };
    let _ = transform(source, &parsed.options, format, &limits, &|| 0.0);
    // `format=json` with a ThumbHash: the same pixels, described.
    if selector >= 128 {
        let described = ImageOptions {
            answer: Answer::JsonWithThumbHash,
            ..parsed.options
        };
        let _ = describe(source, &described, &limits, &|| 0.0);
    }
});
