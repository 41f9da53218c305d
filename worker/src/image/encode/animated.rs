//! Animation encoders, one frame at a time: animated WebP through libwebp's
//! `WebPAnimEncoder` (the `webp` crate's wrapper keeps every frame until the end; this
//! hands each to libwebp as it is made, so frames are never all in memory) and animated
//! GIF through the `gif` crate (NeuQuant palettes per frame).

// libwebp's animation encoder has no safe Rust binding that streams frames.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use libwebp_sys as sys;

use crate::image::TransformError;
use crate::image::animation::FrameSink;
use crate::image::decode::Decoded;

fn failed(what: &str) -> TransformError {
    TransformError::Internal(format!("animated WebP: {what}"))
}

/// libwebp's animation encoder, fed frame by frame.
pub struct AnimatedWebp {
    encoder: *mut sys::WebPAnimEncoder,
    config: sys::WebPConfig,
    size: (u32, u32),
    /// Milliseconds from the start to the next frame.
    timestamp: i32,
}

impl AnimatedWebp {
    pub fn new(size: (u32, u32), quality: u8) -> Result<Self, TransformError> {
        let (w, h) = (
            i32::try_from(size.0).map_err(|_| failed("too wide"))?,
            i32::try_from(size.1).map_err(|_| failed("too tall"))?,
        );
        let mut options = MaybeUninit::<sys::WebPAnimEncoderOptions>::uninit();
        let mut config = MaybeUninit::<sys::WebPConfig>::uninit();
        // SAFETY: the Init functions fill the structs they are given (checked by their
        // return values) before anything reads them; the encoder pointer is checked.
        unsafe {
            let abi = sys::WebPGetMuxABIVersion();
            if sys::WebPAnimEncoderOptionsInitInternal(options.as_mut_ptr(), abi) == 0 {
                return Err(failed("options"));
            }
            let mut options = options.assume_init();
            // Loop forever, as the sources do by default; minimize the file size.
            options.anim_params.loop_count = 0;
            options.allow_mixed = 0;
            if sys::WebPConfigInitInternal(
                config.as_mut_ptr(),
                sys::WebPPreset::WEBP_PRESET_DEFAULT,
                f32::from(quality.clamp(1, 100)),
                sys::WEBP_ENCODER_ABI_VERSION as i32,
            ) == 0
            {
                return Err(failed("config"));
            }
            let config = config.assume_init();
            if sys::WebPValidateConfig(&config) == 0 {
                return Err(failed("config"));
            }
            let encoder = sys::WebPAnimEncoderNewInternal(w, h, &options, abi);
            if encoder.is_null() {
                return Err(failed("out of memory"));
            }
            Ok(Self {
                encoder,
                config,
                size,
                timestamp: 0,
            })
        }
    }

    fn error(&self) -> String {
        // SAFETY: the encoder is live; the message is a NUL-terminated string it owns.
        unsafe {
            let message = sys::WebPAnimEncoderGetError(self.encoder);
            if message.is_null() {
                return String::from("animated WebP: unknown error");
            }
            format!(
                "animated WebP: {}",
                std::ffi::CStr::from_ptr(message).to_string_lossy()
            )
        }
    }
}

impl FrameSink for AnimatedWebp {
    fn add(&mut self, frame: &Decoded, delay_ms: u32) -> Result<(), String> {
        if (frame.width, frame.height) != self.size
            || frame.rgba.len() != frame.width as usize * frame.height as usize * 4
        {
            return Err(String::from("animated WebP: a frame of another size"));
        }
        let mut picture = MaybeUninit::<sys::WebPPicture>::uninit();
        // SAFETY: the picture is initialised by WebPPictureInitInternal (checked), given
        // this frame's size, filled from `frame.rgba` (w × h × 4 bytes, checked above),
        // added to the live encoder, and freed whatever the outcome.
        unsafe {
            if sys::WebPPictureInitInternal(
                picture.as_mut_ptr(),
                sys::WEBP_ENCODER_ABI_VERSION as i32,
            ) == 0
            {
                return Err(String::from("animated WebP: picture"));
            }
            let mut picture = picture.assume_init();
            picture.use_argb = 1;
            picture.width = self.size.0 as i32;
            picture.height = self.size.1 as i32;
            let imported = sys::WebPPictureImportRGBA(
                &mut picture,
                frame.rgba.as_ptr(),
                (frame.width * 4) as i32,
            );
            let added = imported != 0
                && sys::WebPAnimEncoderAdd(
                    self.encoder,
                    &mut picture,
                    self.timestamp,
                    &self.config,
                ) != 0;
            sys::WebPPictureFree(&mut picture);
            if !added {
                return Err(self.error());
            }
        }
        // Browsers show frames under 10 ms at 100 ms (as for GIF): keep what was asked.
        self.timestamp = self
            .timestamp
            .saturating_add(i32::try_from(delay_ms).unwrap_or(i32::MAX));
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Vec<u8>, String> {
        let mut data = sys::WebPData::default();
        // SAFETY: a null frame ends the animation at the last timestamp; `data` is
        // filled by Assemble (checked), copied out, and released with WebPDataClear.
        unsafe {
            if sys::WebPAnimEncoderAdd(
                self.encoder,
                std::ptr::null_mut(),
                self.timestamp,
                std::ptr::null(),
            ) == 0
                || sys::WebPAnimEncoderAssemble(self.encoder, &mut data) == 0
            {
                return Err(self.error());
            }
            let bytes = std::slice::from_raw_parts(data.bytes, data.size).to_vec();
            sys::WebPDataClear(&mut data);
            Ok(bytes)
        }
    }
}

impl Drop for AnimatedWebp {
    fn drop(&mut self) {
        // SAFETY: created by WebPAnimEncoderNewInternal, deleted once.
        unsafe { sys::WebPAnimEncoderDelete(self.encoder) }
    }
}

/// An animated GIF, a palette per frame.
pub struct AnimatedGif {
    encoder: gif::Encoder<Vec<u8>>,
    size: (u16, u16),
}

impl AnimatedGif {
    pub fn new(size: (u32, u32)) -> Result<Self, TransformError> {
        let side = |v: u32| {
            u16::try_from(v).map_err(|_| {
                TransformError::Internal(String::from("a GIF is at most 65535 px a side"))
            })
        };
        let size = (side(size.0)?, side(size.1)?);
        let mut encoder = gif::Encoder::new(Vec::new(), size.0, size.1, &[])
            .map_err(|e| TransformError::Internal(format!("GIF: {e}")))?;
        encoder
            .set_repeat(gif::Repeat::Infinite)
            .map_err(|e| TransformError::Internal(format!("GIF: {e}")))?;
        Ok(Self { encoder, size })
    }
}

/// NeuQuant's sampling factor: 1 is best, 30 fastest; 10 is the gif crate's suggestion.
const GIF_SPEED: i32 = 10;

impl FrameSink for AnimatedGif {
    fn add(&mut self, frame: &Decoded, delay_ms: u32) -> Result<(), String> {
        if (frame.width, frame.height) != (u32::from(self.size.0), u32::from(self.size.1)) {
            return Err(String::from("GIF: a frame of another size"));
        }
        let mut rgba = frame.rgba.clone();
        let mut out = gif::Frame::from_rgba_speed(self.size.0, self.size.1, &mut rgba, GIF_SPEED);
        out.delay = u16::try_from(delay_ms.div_ceil(10)).unwrap_or(u16::MAX);
        out.dispose = gif::DisposalMethod::Background;
        self.encoder
            .write_frame(&out)
            .map_err(|e| format!("GIF: {e}"))
    }

    fn finish(self: Box<Self>) -> Result<Vec<u8>, String> {
        self.encoder.into_inner().map_err(|e| format!("GIF: {e}"))
    }
}
