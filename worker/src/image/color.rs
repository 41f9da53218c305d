//! Colour management: pixels of a source with an embedded ICC profile (Display P3,
//! Adobe RGB, …) are converted to sRGB right after decoding, so a derivative — which
//! carries no profile — looks the same as its original in a colour-managed browser.
//! `qcms` (Firefox's colour engine, pure Rust) does the conversion.
//!
//! A profile that does not parse is ignored, as browsers ignore it: the pixels are
//! taken as sRGB.

use super::decode::Decoded;

/// Converts `decoded` to sRGB in place if it carries a usable ICC profile; returns
/// whether it did.
pub fn to_srgb(decoded: &mut Decoded) -> bool {
    let Some(icc) = decoded.icc.take() else {
        return false;
    };
    let Some(source) = qcms::Profile::new_from_slice(&icc, false) else {
        return false;
    };
    let mut srgb = qcms::Profile::new_sRGB();
    srgb.precache_output_transform();
    let Some(transform) = qcms::Transform::new(
        &source,
        &srgb,
        qcms::DataType::RGBA8,
        qcms::Intent::Perceptual,
    ) else {
        return false;
    };
    transform.apply(&mut decoded.rgba);
    true
}

#[cfg(test)]
mod tests {

    use crate::image::format::OutputFormat;
    use crate::image::limits::Limits;
    use crate::image::options::ImageOptions;
    use crate::image::{decode, transform};
    use image::ImageEncoder;

    /// Flat patches: saturated primaries (where Adobe RGB and sRGB differ most), a
    /// skin tone, a grey and a cyan.
    const PATCHES: [[u8; 3]; 6] = [
        [220, 30, 40],
        [40, 180, 60],
        [30, 60, 200],
        [224, 172, 140],
        [128, 128, 128],
        [40, 190, 210],
    ];
    const PATCH: u32 = 60;

    fn fixture(name: &str) -> Vec<u8> {
        crate::image::testing::fixture(&format!("icc/{name}"))
    }

    fn patches_srgb() -> Vec<u8> {
        let mut rgba = Vec::new();
        for _y in 0..PATCH {
            for patch in PATCHES {
                for _x in 0..PATCH {
                    rgba.extend_from_slice(&[patch[0], patch[1], patch[2], 255]);
                }
            }
        }
        rgba
    }

    fn jpeg(rgba: &[u8], icc: Option<&[u8]>) -> Vec<u8> {
        let width = PATCH * PATCHES.len() as u32;
        let rgb: Vec<u8> = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 97)
            .write_image(&rgb, width, PATCH, image::ExtendedColorType::Rgb8)
            .unwrap();
        let Some(icc) = icc else { return out };
        // APP2 ICC_PROFILE segment (one chunk) right after SOI.
        let mut segment = b"ICC_PROFILE\0".to_vec();
        segment.extend_from_slice(&[1, 1]);
        segment.extend_from_slice(icc);
        let len = u16::try_from(segment.len() + 2).unwrap();
        let mut with_icc = vec![0xFF, 0xD8, 0xFF, 0xE2];
        with_icc.extend_from_slice(&len.to_be_bytes());
        with_icc.extend_from_slice(&segment);
        with_icc.extend_from_slice(&out[2..]);
        with_icc
    }

    /// sRGB 8-bit → CIELAB (D65).
    fn lab(rgb: [u8; 3]) -> [f64; 3] {
        let lin = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let (r, g, b) = (lin(rgb[0]), lin(rgb[1]), lin(rgb[2]));
        let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
        let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
        let f = |t: f64| {
            if t > 0.008856 {
                t.cbrt()
            } else {
                7.787 * t + 16.0 / 116.0
            }
        };
        [
            116.0 * f(y) - 16.0,
            500.0 * (f(x) - f(y)),
            200.0 * (f(y) - f(z)),
        ]
    }

    /// CIEDE2000 colour difference.
    fn delta_e00(a: [f64; 3], b: [f64; 3]) -> f64 {
        use std::f64::consts::PI;
        let (l1, a1, b1) = (a[0], a[1], a[2]);
        let (l2, a2, b2) = (b[0], b[1], b[2]);
        let c1 = a1.hypot(b1);
        let c2 = a2.hypot(b2);
        let cm = (c1 + c2) / 2.0;
        let g = 0.5 * (1.0 - (cm.powi(7) / (cm.powi(7) + 25f64.powi(7))).sqrt());
        let a1p = a1 * (1.0 + g);
        let a2p = a2 * (1.0 + g);
        let c1p = a1p.hypot(b1);
        let c2p = a2p.hypot(b2);
        let hp = |b: f64, a: f64| {
            let h = b.atan2(a).to_degrees();
            if h < 0.0 { h + 360.0 } else { h }
        };
        let h1p = hp(b1, a1p);
        let h2p = hp(b2, a2p);
        let dl = l2 - l1;
        let dc = c2p - c1p;
        let dh = if c1p * c2p == 0.0 {
            0.0
        } else if (h2p - h1p).abs() <= 180.0 {
            h2p - h1p
        } else if h2p - h1p > 180.0 {
            h2p - h1p - 360.0
        } else {
            h2p - h1p + 360.0
        };
        let dhh = 2.0 * (c1p * c2p).sqrt() * (dh.to_radians() / 2.0).sin();
        let lm = (l1 + l2) / 2.0;
        let cmp = (c1p + c2p) / 2.0;
        let hm = if c1p * c2p == 0.0 {
            h1p + h2p
        } else if (h1p - h2p).abs() <= 180.0 {
            (h1p + h2p) / 2.0
        } else if h1p + h2p < 360.0 {
            (h1p + h2p + 360.0) / 2.0
        } else {
            (h1p + h2p - 360.0) / 2.0
        };
        let t = 1.0 - 0.17 * ((hm - 30.0).to_radians()).cos()
            + 0.24 * ((2.0 * hm).to_radians()).cos()
            + 0.32 * ((3.0 * hm + 6.0).to_radians()).cos()
            - 0.20 * ((4.0 * hm - 63.0).to_radians()).cos();
        let dtheta = 30.0 * (-((hm - 275.0) / 25.0).powi(2)).exp();
        let rc = 2.0 * (cmp.powi(7) / (cmp.powi(7) + 25f64.powi(7))).sqrt();
        let sl = 1.0 + 0.015 * (lm - 50.0).powi(2) / (20.0 + (lm - 50.0).powi(2)).sqrt();
        let sc = 1.0 + 0.045 * cmp;
        let sh = 1.0 + 0.015 * cmp * t;
        let rt = -(2.0 * dtheta * PI / 180.0).sin() * rc;
        ((dl / sl).powi(2) + (dc / sc).powi(2) + (dhh / sh).powi(2) + rt * (dc / sc) * (dhh / sh))
            .sqrt()
    }

    /// The colour at the centre of each patch of a decoded derivative.
    fn centres(bytes: &[u8]) -> Vec<[u8; 3]> {
        let header = decode::read_header(bytes).unwrap();
        let d = decode::decode(bytes, &header, (header.width, header.height)).unwrap();
        let patch_w = d.width / PATCHES.len() as u32;
        (0..PATCHES.len() as u32)
            .map(|i| {
                let (x, y) = (i * patch_w + patch_w / 2, d.height / 2);
                let o = ((y * d.width + x) * 4) as usize;
                [d.rgba[o], d.rgba[o + 1], d.rgba[o + 2]]
            })
            .collect()
    }

    #[test]
    fn delta_e00_matches_published_pairs() {
        // Sharma, Wu, Dalal (2005) test data, pairs 1 and 17.
        let d1 = delta_e00([50.0, 2.6772, -79.7751], [50.0, 0.0, -82.7485]);
        assert!((d1 - 2.0425).abs() < 1e-3, "{d1}");
        let d17 = delta_e00([50.0, 2.5, 0.0], [73.0, 25.0, -18.0]);
        assert!((d17 - 27.1492).abs() < 1e-3, "{d17}");
    }

    #[test]
    fn an_adobe_rgb_source_matches_its_srgb_original_within_delta_e_2() {
        let adobe_icc = fixture("AdobeRGB1998.icc");
        // The same colours, re-encoded in Adobe RGB and tagged with its profile.
        let mut adobe = patches_srgb();
        let srgb_profile = qcms::Profile::new_sRGB();
        let mut adobe_profile = qcms::Profile::new_from_slice(&adobe_icc, false).unwrap();
        adobe_profile.precache_output_transform();
        qcms::Transform::new(
            &srgb_profile,
            &adobe_profile,
            qcms::DataType::RGBA8,
            qcms::Intent::Perceptual,
        )
        .unwrap()
        .apply(&mut adobe);
        let original = jpeg(&patches_srgb(), None);
        let wide = jpeg(&adobe, Some(&adobe_icc));

        let options = ImageOptions::parse("w=180").unwrap().options;
        let run = |bytes: &[u8]| {
            transform(
                bytes,
                &options,
                OutputFormat::Png,
                &Limits::default(),
                &|| 0.0,
            )
            .unwrap()
            .bytes
        };
        let want = centres(&run(&original));
        let got = centres(&run(&wide));
        for ((w, g), patch) in want.iter().zip(&got).zip(PATCHES) {
            let de = delta_e00(lab(*w), lab(*g));
            assert!(
                de < 2.0,
                "patch {patch:?}: sRGB {w:?} vs Adobe RGB {g:?}: ΔE00 {de:.2}"
            );
        }
        // Without conversion the wide-gamut values are far off: the test can fail.
        let untagged = centres(&run(&jpeg(&adobe, None)));
        let worst = want
            .iter()
            .zip(&untagged)
            .map(|(w, u)| delta_e00(lab(*w), lab(*u)))
            .fold(0.0, f64::max);
        assert!(worst > 5.0, "ignoring the profile should show: {worst:.2}");
    }
}
