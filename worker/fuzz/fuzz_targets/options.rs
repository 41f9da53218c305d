//! The image option parser: never panics, and normalizing is idempotent on the parsed
//! value: `parse(normalize(s))` is the canonical value of `parse(s)`, compared as typed
//! options (defaults canonical, so `q=85` and no `q` are one value), and its spelling is
//! the same string. One spelling per derivative, so no two spellings of one output.
#![no_main]

use course_edge_worker::image::options::ImageOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = ImageOptions::parse(text) {
        let canonical = parsed.options.canonical();
        assert_eq!(canonical.canonical(), canonical, "canonical() is idempotent");
        let normalized = parsed.options.normalized();
        let again = ImageOptions::parse(&normalized)
            .unwrap_or_else(|e| panic!("normalized {normalized:?} does not parse: {e:?}"))
        .options;
        assert_eq!(again, canonical, "{text:?} → {normalized:?}");
        assert_eq!(again.normalized(), normalized);
        let _ = parsed.options.target();
    }
});
