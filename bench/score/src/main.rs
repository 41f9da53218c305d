//! `image-score <original> <derivative>...`: one JSON line per derivative with its decoded
//! size, byte count and SSIMULACRA2 score against an ideal downscale of the original.
//!
//! The reference is the full-resolution original, converted to linear light and resized with
//! Lanczos3 in f32 to the derivative's exact size, so every pipeline (whatever its own
//! filter, rounding or gamma handling) is scored against the same neutral target. Scores
//! follow the metric's scale: 90+ visually lossless, 70 high quality, 50 medium.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use image::{ImageBuffer, Rgb, imageops};
use ssimulacra2::{
    ColorPrimaries, Rgb as SsimRgb, TransferCharacteristic, compute_frame_ssimulacra2,
};

type LinearImage = ImageBuffer<Rgb<f32>, Vec<f32>>;

fn srgb_to_linear(v: u8) -> f32 {
    let c = f32::from(v) / 255.0;
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

fn linear_to_srgb(c: f32) -> f32 {
    let c = c.clamp(0.0, 1.0);
    if c <= 0.003_130_8 {
        c * 12.92
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

fn to_linear(img: &image::RgbImage) -> LinearImage {
    let lut: Vec<f32> = (0..=255u8).map(srgb_to_linear).collect();
    ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        Rgb([
            lut[usize::from(p[0])],
            lut[usize::from(p[1])],
            lut[usize::from(p[2])],
        ])
    })
}

/// SSIMULACRA2 of an sRGB derivative against a linear-light reference of the same size.
fn score(reference: &LinearImage, derivative: &image::RgbImage) -> Result<f64, String> {
    let (w, h) = (reference.width() as usize, reference.height() as usize);
    // Both sides go through the same sRGB→linear conversion inside the metric: the
    // reference is handed back as unquantized sRGB floats.
    let reference = SsimRgb::new(
        reference
            .pixels()
            .map(|p| p.0.map(linear_to_srgb))
            .collect(),
        w,
        h,
        TransferCharacteristic::SRGB,
        ColorPrimaries::BT709,
    )
    .map_err(|e| format!("reference: {e:?}"))?;
    let distorted = SsimRgb::new(
        derivative
            .pixels()
            .map(|p| p.0.map(|c| f32::from(c) / 255.0))
            .collect(),
        derivative.width() as usize,
        derivative.height() as usize,
        TransferCharacteristic::SRGB,
        ColorPrimaries::BT709,
    )
    .map_err(|e| format!("derivative: {e:?}"))?;
    compute_frame_ssimulacra2(reference, distorted).map_err(|e| format!("ssimulacra2: {e}"))
}

/// The image as opaque RGB: with alpha, composited over white (the same for the original
/// and every derivative, so transparent pixels, whose colour is arbitrary, do not count).
fn open_rgb(path: &Path) -> Result<image::RgbImage, String> {
    let image = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !image.color().has_alpha() {
        return Ok(image.to_rgb8());
    }
    let rgba = image.to_rgba8();
    Ok(ImageBuffer::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over =
            |c: u8| ((u32::from(c) * u32::from(a) + 255 * (255 - u32::from(a)) + 127) / 255) as u8;
        Rgb([over(r), over(g), over(b)])
    }))
}

fn run(args: &[String]) -> Result<(), String> {
    let [original, derivatives @ ..] = args else {
        return Err("usage: image-score <original> <derivative>...".into());
    };
    let original = to_linear(&open_rgb(Path::new(original))?);
    let mut references: HashMap<(u32, u32), LinearImage> = HashMap::new();
    for path in derivatives {
        let path = Path::new(path);
        let derivative = open_rgb(path)?;
        let size = derivative.dimensions();
        let reference = references.entry(size).or_insert_with(|| {
            imageops::resize(&original, size.0, size.1, imageops::FilterType::Lanczos3)
        });
        let value = score(reference, &derivative)?;
        let bytes = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        println!(
            "{}",
            serde_json::json!({
                "file": path.display().to_string(),
                "size": format!("{}x{}", size.0, size.1),
                "bytes": bytes,
                "ssimulacra2": (value * 100.0).round() / 100.0,
            })
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("image-score: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo_like(w: u32, h: u32) -> image::RgbImage {
        ImageBuffer::from_fn(w, h, |x, y| {
            let v = ((x * 7 + y * 13) % 256) as u8;
            Rgb([v, (x * 255 / w) as u8, (y * 255 / h) as u8])
        })
    }

    #[test]
    fn identical_images_score_near_100_and_degraded_ones_lower() {
        let img = photo_like(256, 192);
        let reference = to_linear(&img);
        let same = score(&reference, &img).unwrap();
        // Not exactly 100: the reference went through linear light and back in f32, and the
        // metric is steep at zero error on this synthetic saw-tooth pattern.
        assert!(same > 98.0, "identical image scored {same}");

        let mut noisy = img.clone();
        for (i, p) in noisy.pixels_mut().enumerate() {
            let d = if i % 2 == 0 { 40 } else { 0 };
            p.0 = p.0.map(|c| c.saturating_add(d));
        }
        let worse = score(&reference, &noisy).unwrap();
        assert!(worse < same - 10.0, "degraded {worse} vs identical {same}");
    }

    #[test]
    fn transparent_pixels_are_scored_over_white() {
        let dir = std::env::temp_dir().join(format!("image-score-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alpha.png");
        image::RgbaImage::from_fn(4, 1, |x, _| {
            image::Rgba([0, 0, 0, [0, 85, 170, 255][x as usize]])
        })
        .save(&path)
        .unwrap();
        let rgb = open_rgb(&path).unwrap();
        let greys: Vec<u8> = rgb.pixels().map(|p| p.0[0]).collect();
        assert_eq!(greys, [255, 170, 85, 0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        assert!(run(&[]).is_err());
        assert!(run(&["/nonexistent.jpg".into()]).is_err());
    }
}
