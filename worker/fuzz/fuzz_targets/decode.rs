//! The decode path: arbitrary bytes through the whole transform (header, limits,
//! decode, orientation, resize, encode) must give an image or a classified error,
//! never a panic, within a small pixel budget.
#![no_main]

use course_edge_worker::image::format::OutputFormat;
use course_edge_worker::image::limits::Limits;
use course_edge_worker::image::options::ImageOptions;
use course_edge_worker::image::transform;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_source_pixels: 4_000_000,
        max_unscaled_pixels: 4_000_000,
        ..Limits::default()
    };
    let Ok(parsed) = ImageOptions::parse("w=64,h=64,fit=cover") else {
        return;
    };
    let _ = transform(data, &parsed.options, OutputFormat::Jpeg, &limits, &|| 0.0);
});
