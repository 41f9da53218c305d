use std::io::Cursor;

use image::AnimationDecoder;

use super::*;
use crate::image::limits::Limits;
use crate::image::transform;

const RED: [u8; 3] = [230, 20, 20];
const GREEN: [u8; 3] = [20, 200, 40];
const BLUE: [u8; 3] = [30, 40, 220];

/// An animated GIF of `frames` flat frames (colour, delay in centiseconds).
fn gif_of(width: u16, height: u16, frames: &[([u8; 3], u16)]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut out, width, height, &[]).unwrap();
        encoder.set_repeat(gif::Repeat::Infinite).unwrap();
        for (colour, delay) in frames {
            let mut rgba: Vec<u8> = (0..usize::from(width) * usize::from(height))
                .flat_map(|_| [colour[0], colour[1], colour[2], 255])
                .collect();
            let mut frame = gif::Frame::from_rgba_speed(width, height, &mut rgba, 10);
            frame.delay = *delay;
            encoder.write_frame(&frame).unwrap();
        }
    }
    out
}

fn run(bytes: &[u8], spec: &str, format: OutputFormat) -> Result<Output, TransformError> {
    let options = ImageOptions::parse(spec).unwrap().options;
    transform(bytes, &options, format, &Limits::default(), &|| 0.0)
}

/// Every frame of an animated output: its size, mean colour and delay (ms).
fn frames_of(bytes: &[u8]) -> Vec<((u32, u32), [u8; 3], u32)> {
    let frames = if bytes.starts_with(b"GIF") {
        image::codecs::gif::GifDecoder::new(Cursor::new(bytes))
            .unwrap()
            .into_frames()
    } else {
        image::codecs::webp::WebPDecoder::new(Cursor::new(bytes))
            .unwrap()
            .into_frames()
    };
    frames
        .map(|f| {
            let f = f.unwrap();
            let (n, d) = f.delay().numer_denom_ms();
            let buffer = f.into_buffer();
            let count = u64::from(buffer.width() * buffer.height());
            let mut sum = [0u64; 3];
            for p in buffer.pixels() {
                for (total, channel) in sum.iter_mut().zip(p.0) {
                    *total += u64::from(channel);
                }
            }
            let mean = sum.map(|s| (s / count) as u8);
            (buffer.dimensions(), mean, n / d.max(1))
        })
        .collect()
}

fn near(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance)
}

#[test]
fn every_frame_is_resized_in_order_with_its_delay() {
    let gif = gif_of(60, 40, &[(RED, 10), (GREEN, 20), (BLUE, 30)]);
    assert!(is_animated(&gif, SourceFormat::Gif));
    for format in [OutputFormat::Webp, OutputFormat::Gif] {
        let out = run(&gif, "w=30", format).unwrap();
        assert_eq!((out.width, out.height), (30, 20));
        let frames = frames_of(&out.bytes);
        assert_eq!(frames.len(), 3, "{format:?}");
        for ((size, colour, delay), (want, want_delay)) in
            frames.iter().zip([(RED, 100), (GREEN, 200), (BLUE, 300)])
        {
            assert_eq!(*size, (30, 20));
            assert!(
                near(*colour, want, 16),
                "{format:?}: {colour:?} vs {want:?}"
            );
            assert_eq!(*delay, want_delay, "{format:?}");
        }
    }
    let webp = run(&gif, "w=30", OutputFormat::Webp).unwrap();
    assert!(
        is_animated(&webp.bytes, SourceFormat::Webp),
        "an animated WebP"
    );
    // And an animated WebP source becomes one again.
    let again = run(&webp.bytes, "w=20", OutputFormat::Webp).unwrap();
    assert_eq!(frames_of(&again.bytes).len(), 3);
}

#[test]
fn frames_are_turned_filtered_and_framed_like_a_still() {
    let gif = gif_of(60, 40, &[(RED, 10), (BLUE, 10)]);
    let out = run(
        &gif,
        "w=20,rotate=90,border=2,border.color=white",
        OutputFormat::Gif,
    )
    .unwrap();
    // Turned: 40×60 → 20×30, plus the border.
    assert_eq!((out.width, out.height), (24, 34));
    let frames = frames_of(&out.bytes);
    assert_eq!(frames.len(), 2);
    assert!(frames.iter().all(|(size, ..)| *size == (24, 34)));
    let grey = run(&gif, "w=20,saturation=0", OutputFormat::Gif).unwrap();
    for (_, [r, g, b], _) in frames_of(&grey.bytes) {
        assert!(r.abs_diff(g) <= 6 && g.abs_diff(b) <= 6, "{r} {g} {b}");
    }
}

#[test]
fn anim_false_and_still_formats_take_the_first_frame() {
    let gif = gif_of(60, 40, &[(GREEN, 10), (RED, 10)]);
    let still = run(&gif, "w=30,anim=false", OutputFormat::Webp).unwrap();
    assert!(!is_animated(&still.bytes, SourceFormat::Webp));
    let png = run(&gif, "w=30", OutputFormat::Png).unwrap();
    assert!(png.bytes.starts_with(b"\x89PNG"));
    // A still GIF source to GIF output: one frame.
    let one = gif_of(10, 10, &[(BLUE, 0)]);
    assert!(!is_animated(&one, SourceFormat::Gif));
    let out = run(&one, "", OutputFormat::Gif).unwrap();
    assert_eq!(frames_of(&out.bytes).len(), 1);
}

#[test]
fn the_frame_caps_refuse_with_what_to_do() {
    let many = gif_of(2, 2, &vec![(RED, 1); MAX_FRAMES as usize + 1]);
    match run(&many, "", OutputFormat::Gif) {
        Err(TransformError::TooLarge(e @ LimitError::Animation { .. })) => {
            assert!(e.to_string().contains("anim=false"), "{e}");
        }
        other => panic!("{:?}", other.map(|o| o.bytes.len())),
    }
    // Within the caps, and the same source as a still.
    assert!(run(&many, "anim=false", OutputFormat::Gif).is_ok());
}

#[test]
fn the_model_grows_with_the_canvas_and_the_output_not_the_frame_count() {
    let small = footprint_bytes(1000, (100, 100), (50, 50), 0);
    assert!(footprint_bytes(1000, (200, 100), (50, 50), 0) > small);
    assert!(footprint_bytes(1000, (100, 100), (100, 50), 0) > small);
    // The encoded bytes are bounded by the output cap, whatever the output size.
    let huge = footprint_bytes(0, (1, 1), (4096, 4096), 0);
    assert!(
        huge < 4096 * 4096 * (ENCODER_BYTES_PER_OUTPUT_PIXEL + 1)
            + MAX_OUTPUT_PIXELS * 6
            + FIXED_BYTES
            + 4096 * 8
    );
}

#[test]
fn a_later_frame_larger_than_the_canvas_is_refused_not_allocated() {
    // A 10×10 canvas whose second frame claims 3000×3000 (36 MB of RGBA).
    let mut out = Vec::new();
    {
        let palette = [0u8, 0, 0, 255, 255, 255];
        let mut encoder = gif::Encoder::new(&mut out, 10, 10, &palette).unwrap();
        for side in [10u16, 3000] {
            let frame = gif::Frame {
                width: side,
                height: side,
                buffer: vec![1u8; usize::from(side) * usize::from(side)].into(),
                ..gif::Frame::default()
            };
            encoder.write_frame(&frame).unwrap();
        }
    }
    match run(&out, "", OutputFormat::Webp) {
        Err(TransformError::Corrupt(why)) => {
            assert!(why.contains("larger than its canvas"), "{why}")
        }
        other => panic!("{:?}", other.map(|o| o.bytes.len())),
    }
}
