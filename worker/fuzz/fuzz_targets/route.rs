//! The route parser: any method and path give a route or a classified error, never a
//! panic; no image route or object route ever names a `derived/` key, and every key
//! parsed from a URL escapes back (`url_path`) to a path that parses to the same key.
#![no_main]

use course_edge_worker::route::{Method, Route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, path) = text.split_once(' ').unwrap_or(("GET", text));
    if let Ok(route) = Route::parse(Method::parse(method), path) {
        let key = match &route {
            Route::Image { key, .. } => Some(key),
            Route::Object { key, uploaded: true, .. } => Some(key),
            _ => None,
        };
        if let Some(key) = key {
            assert!(!key.as_str().starts_with("derived/"), "{path:?} reached {key:?}");
            let again = Route::parse(Method::parse("GET"), &format!("/media/{}", key.url_path()));
            match again {
                Ok(Route::Object { key: back, .. }) => assert_eq!(&back, key),
                other => panic!("{key:?} escaped to a path that parses to {other:?}"),
            }
        }
    }
});
