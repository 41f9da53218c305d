//! Session cookies as the edge verifies them (`protocol::SessionKeys::verify`, the
//! parser of `ce_session`): arbitrary tokens never panic, and none verifies unless it
//! has the signed form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::SessionKeys;

fuzz_target!(|data: &[u8]| {
    let keys = SessionKeys::parse(&SessionKeys::spec_for("k1", &[7; 32]))
        .unwrap_or_else(|e| panic!("test keys: {e}"));
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    assert!(keys.verify(token, 0).is_err() || token.starts_with("v1."), "{token:?}");
});
