//! Object keys from URLs: never a panic, never a traversal, control character or empty
//! segment in an accepted key, and the percent-encoded form (`Location` of
//! `onerror=redirect`) always parses back to the same key.
#![no_main]

use course_edge_worker::assets::ObjectKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = ObjectKey::parse("", text) {
        let k = key.as_str();
        assert!(!k.split('/').any(|s| s.is_empty() || s == "." || s == ".."), "{k:?}");
        assert!(!k.chars().any(|c| c.is_control() || c == '\\'), "{k:?}");
        let encoded = key.url_path();
        assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{encoded:?}");
        assert_eq!(ObjectKey::parse("", &encoded).ok(), Some(key));
    }
});
