//! The image option parser: never panics, and what it accepts normalizes to a spelling
//! that parses back to the same options (one spelling per derivative).
#![no_main]

use course_edge_worker::image::options::ImageOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = ImageOptions::parse(text) {
        let normalized = parsed.options.normalized();
        if normalized != "original" {
            let again = ImageOptions::parse(&normalized)
                .unwrap_or_else(|e| panic!("normalized {normalized:?} does not parse: {e:?}"));
            assert_eq!(again.options.normalized(), normalized);
        }
        let _ = parsed.options.target();
    }
});
