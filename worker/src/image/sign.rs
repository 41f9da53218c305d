//! Optional signed URLs: `sig` = hex HMAC-SHA256(secret, "<source key>:<normalized
//! options>"). Because the normalized options are signed, any spelling of the same
//! options verifies, and no option can be added or changed without the secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::options::ImageOptions;

fn message(source_key: &str, options: &ImageOptions) -> String {
    format!("{source_key}:{}", options.normalized())
}

fn mac(secret: &[u8], source_key: &str, options: &ImageOptions) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(message(source_key, options).as_bytes());
    mac
}

/// The `sig` value for a URL (for tooling that generates signed URLs).
pub fn sign(secret: &[u8], source_key: &str, options: &ImageOptions) -> String {
    mac(secret, source_key, options)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Constant-time check of a hex signature.
pub fn verify(secret: &[u8], source_key: &str, options: &ImageOptions, sig_hex: &str) -> bool {
    if sig_hex.len() != 64 {
        return false;
    }
    let bytes: Option<Vec<u8>> = (0..32)
        .map(|i| u8::from_str_radix(sig_hex.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect();
    bytes.is_some_and(|b| mac(secret, source_key, options).verify_slice(&b).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_key_and_normalized_options() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let o = ImageOptions::parse("width=800,q=85").unwrap().options;
        let sig = sign(secret, "demo/a.jpg", &o);
        let same = ImageOptions::parse("w=800").unwrap().options;
        assert!(verify(secret, "demo/a.jpg", &same, &sig));
        let wider = ImageOptions::parse("w=801").unwrap().options;
        assert!(!verify(secret, "demo/a.jpg", &wider, &sig));
        assert!(!verify(secret, "demo/b.jpg", &o, &sig));
        assert!(!verify(
            b"another secret another secret!!!",
            "demo/a.jpg",
            &o,
            &sig
        ));
        assert!(!verify(secret, "demo/a.jpg", &o, "zz"));
        assert!(!verify(secret, "demo/a.jpg", &o, &"g".repeat(64)));
    }
}
