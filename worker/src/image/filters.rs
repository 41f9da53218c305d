//! The pixel filters of Cloudflare's option set, run on the resized image (output
//! pixels, before any `pad` canvas): `brightness`, `contrast` and `gamma` through one
//! lookup table per channel value, `saturation` as a mix with the pixel's luma, `blur` (a
//! Gaussian, as three box passes) and `sharpen` (an unsharp mask). In that order: the
//! tone adjustments first, then the blur, then the sharpening of what is left.
//!
//! Every filter works in place on the RGBA buffer with scratch of a few rows or a strip
//! of columns ([`scratch_bytes`]), so no filter holds a second copy of the image: the
//! memory model adds the scratch to the output it already counts. Written here rather
//! than taken from `image::imageops` (whose `blur`/`fast_blur`/`unsharpen` allocate whole
//! f32 or u8 copies of the image, and `blur`'s cost grows with the radius): a 4096 px
//! output blurred at radius 250 must stay inside the isolate's 128 MB.

/// What the filters of one transform are, each at its neutral value when not asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filters {
    /// Factors in hundredths: 100 is no change.
    pub brightness: u16,
    pub contrast: u16,
    pub gamma: u16,
    pub saturation: u16,
    /// Gaussian blur radius in output pixels (σ = radius / 2); 0 is none.
    pub blur: u8,
    /// Unsharp-mask strength in tenths (0–100); 0 is none.
    pub sharpen: u8,
}

impl Default for Filters {
    fn default() -> Self {
        Self::NONE
    }
}

impl Filters {
    pub const NONE: Filters = Filters {
        brightness: 100,
        contrast: 100,
        gamma: 100,
        saturation: 100,
        blur: 0,
        sharpen: 0,
    };

    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    fn tone_changes(&self) -> bool {
        self.brightness != 100 || self.contrast != 100 || self.gamma != 100
    }
}

/// Columns handled together by the vertical blur pass: one 64-byte cache line per row.
const STRIP: usize = 16;

/// The scratch the filters allocate for a `width × height` image, at most: a row, then
/// two strips of columns, for the blur; two rows for the sharpening.
pub fn scratch_bytes(filters: &Filters, (width, height): (u32, u32)) -> u64 {
    let (w, h) = (u64::from(width), u64::from(height));
    let blur = if filters.blur > 0 {
        (w * 4).max(2 * h * STRIP as u64 * 4)
    } else {
        0
    };
    let sharpen = if filters.sharpen > 0 { 2 * w * 4 } else { 0 };
    blur.max(sharpen)
}

/// Applies `filters` to an RGBA8 image of `width × height` in place. `has_alpha`: the
/// blur and the sharpening work on premultiplied colour, so transparent pixels do not
/// bleed their (invisible) colour into their neighbours.
pub fn apply(rgba: &mut [u8], width: u32, height: u32, has_alpha: bool, filters: &Filters) {
    let (w, h) = (width as usize, height as usize);
    if filters.is_none() || w == 0 || h == 0 || rgba.len() != w * h * 4 {
        return;
    }
    if filters.tone_changes() {
        let table = tone_table(filters);
        for px in rgba.chunks_exact_mut(4) {
            for c in &mut px[..3] {
                *c = table[usize::from(*c)];
            }
        }
    }
    if filters.saturation != 100 {
        saturate(rgba, f64::from(filters.saturation) / 100.0);
    }
    if filters.blur == 0 && filters.sharpen == 0 {
        return;
    }
    if has_alpha {
        premultiply(rgba);
    }
    if filters.blur > 0 {
        gaussian(rgba, w, h, f64::from(filters.blur) / 2.0);
    }
    if filters.sharpen > 0 {
        // With alpha, the mask sharpens coverage too (premultiplied colour and its alpha
        // move together), and no colour may exceed its alpha afterwards.
        let channels = if has_alpha { 4 } else { 3 };
        unsharp(rgba, w, h, i32::from(filters.sharpen), channels);
        if has_alpha {
            for px in rgba.chunks_exact_mut(4) {
                let a = px[3];
                for c in &mut px[..3] {
                    *c = (*c).min(a);
                }
            }
        }
    }
    if has_alpha {
        unpremultiply(rgba);
    }
}

fn clamp_u8(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// brightness (a factor on the value), then contrast (a factor on the distance from
/// mid-grey), then gamma (`255·(v/255)^(1/gamma)`: above 1 lightens), per channel value.
fn tone_table(filters: &Filters) -> [u8; 256] {
    let brightness = f64::from(filters.brightness) / 100.0;
    let contrast = f64::from(filters.contrast) / 100.0;
    let gamma = f64::from(filters.gamma) / 100.0;
    let mut table = [0u8; 256];
    for (v, out) in table.iter_mut().enumerate() {
        let v = v as f64 * brightness;
        let v = ((v - 127.5) * contrast + 127.5).clamp(0.0, 255.0);
        let v = 255.0 * (v / 255.0).powf(1.0 / gamma);
        *out = clamp_u8(v);
    }
    table
}

/// Each channel moved away from (or towards, below 1) the pixel's luma (BT.709 weights
/// on the encoded values): 0 is greyscale.
fn saturate(rgba: &mut [u8], factor: f64) {
    for px in rgba.chunks_exact_mut(4) {
        let luma =
            0.2126 * f64::from(px[0]) + 0.7152 * f64::from(px[1]) + 0.0722 * f64::from(px[2]);
        for c in &mut px[..3] {
            *c = clamp_u8(luma + (f64::from(*c) - luma) * factor);
        }
    }
}

fn premultiply(rgba: &mut [u8]) {
    for px in rgba.chunks_exact_mut(4) {
        let a = u32::from(px[3]);
        for c in &mut px[..3] {
            *c = ((u32::from(*c) * a + 127) / 255) as u8;
        }
    }
}

fn unpremultiply(rgba: &mut [u8]) {
    for px in rgba.chunks_exact_mut(4) {
        let a = u32::from(px[3]);
        if a == 0 {
            px[..3].fill(0);
            continue;
        }
        for c in &mut px[..3] {
            *c = ((u32::from(*c) * 255 + a / 2) / a).min(255) as u8;
        }
    }
}

/// The widths of three box filters whose succession approximates a Gaussian of `sigma`
/// (the variance of a box of width w is (w²−1)/12; three of them add up to σ²).
fn box_widths(sigma: f64) -> [usize; 3] {
    let n = 3.0;
    let ideal = (12.0 * sigma * sigma / n + 1.0).sqrt();
    let mut lower = ideal.floor() as usize;
    if lower.is_multiple_of(2) {
        lower = lower.saturating_sub(1);
    }
    let lower = lower.max(1);
    let upper = lower + 2;
    let l = lower as f64;
    let m = ((12.0 * sigma * sigma - n * l * l - 4.0 * n * l - 3.0 * n) / (-4.0 * l - 4.0))
        .round()
        .clamp(0.0, 3.0) as usize;
    let mut widths = [0, 1, 2].map(|i| if i < m { lower } else { upper });
    // A small σ (blur=1: 0.5) rounds to three boxes of one pixel, which blur nothing:
    // the last box is then three wide (σ ≈ 0.8), so every blur asked for blurs.
    if widths == [1, 1, 1] {
        widths[2] = 3;
    }
    widths
}

/// One box pass over `len` contiguous pixels of `src` (4 channels each), written to `dst`
/// at `stride`-pixel steps; edges repeat the border pixel.
fn box_line(src: &[u8], dst: &mut [u8], len: usize, stride: usize, radius: usize) {
    if len == 0 {
        return;
    }
    let at = |i: isize| -> usize { i.clamp(0, len as isize - 1) as usize * 4 };
    let width = (2 * radius + 1) as u32;
    let mut sum = [0u32; 4];
    for k in -(radius as isize)..=(radius as isize) {
        let p = at(k);
        for c in 0..4 {
            sum[c] += u32::from(src[p + c]);
        }
    }
    for i in 0..len {
        let out = i * stride * 4;
        for c in 0..4 {
            dst[out + c] = ((sum[c] + width / 2) / width) as u8;
        }
        let leaving = at(i as isize - radius as isize);
        let entering = at(i as isize + radius as isize + 1);
        for c in 0..4 {
            sum[c] = sum[c] + u32::from(src[entering + c]) - u32::from(src[leaving + c]);
        }
    }
}

fn gaussian(rgba: &mut [u8], w: usize, h: usize, sigma: f64) {
    let radii = box_widths(sigma).map(|width| width / 2);
    // Rows: each copied out once per pass and written back.
    let mut line = vec![0u8; w * 4];
    for row in rgba.chunks_exact_mut(w * 4) {
        for &r in &radii {
            line.copy_from_slice(row);
            box_line(&line, row, w, 1, r);
        }
    }
    drop(line);
    // Columns, a strip of STRIP at a time: gathered into `strip` (h rows of STRIP
    // pixels), every lane (column × channel) of it summed down the rows together, each
    // pass from one buffer into the other; scattered back.
    const LANES: usize = STRIP * 4;
    let mut strip = vec![0u8; h * LANES];
    let mut other = vec![0u8; h * LANES];
    let mut sums = [0u32; LANES];
    let mut x0 = 0;
    while x0 < w {
        let n = STRIP.min(w - x0) * 4;
        for y in 0..h {
            let from = (y * w) * 4 + x0 * 4;
            strip[y * LANES..y * LANES + n].copy_from_slice(&rgba[from..from + n]);
        }
        for &r in &radii {
            box_down(&strip, &mut other, h, r, &mut sums);
            std::mem::swap(&mut strip, &mut other);
        }
        for y in 0..h {
            let to = (y * w) * 4 + x0 * 4;
            rgba[to..to + n].copy_from_slice(&strip[y * LANES..y * LANES + n]);
        }
        x0 += STRIP;
    }
}

/// One box pass down the `h` rows of a strip (`sums.len()` lanes a row), `src` to `dst`;
/// the edges repeat the border row.
fn box_down(src: &[u8], dst: &mut [u8], h: usize, radius: usize, sums: &mut [u32]) {
    let lanes = sums.len();
    let at = |i: isize| -> usize { i.clamp(0, h as isize - 1) as usize * lanes };
    sums.fill(0);
    for k in -(radius as isize)..=(radius as isize) {
        let p = at(k);
        for (s, v) in sums.iter_mut().zip(&src[p..p + lanes]) {
            *s += u32::from(*v);
        }
    }
    // A sum is at most 255 × 251 (radius 125): exact in f32, and v·width·(1/width) rounds back to v.
    let inverse = 1.0 / (2 * radius + 1) as f32;
    for i in 0..h {
        for (o, s) in dst[i * lanes..(i + 1) * lanes].iter_mut().zip(sums.iter()) {
            *o = (*s as f32 * inverse + 0.5) as u8;
        }
        let (leaving, entering) = (
            at(i as isize - radius as isize),
            at(i as isize + radius as isize + 1),
        );
        let pairs = src[entering..entering + lanes]
            .iter()
            .zip(&src[leaving..leaving + lanes]);
        for (s, (e, l)) in sums.iter_mut().zip(pairs) {
            *s = *s + u32::from(*e) - u32::from(*l);
        }
    }
}

/// `v + amount·(v − blurred)` with amount = `tenths` / 10, the blur a 3×3 binomial
/// ([1 2 1] ⊗ [1 2 1] / 16) with the border pixels repeated, in integers. Rows are
/// rewritten top to bottom; the two scratch rows keep the originals of the row above
/// and of the current one.
fn unsharp(rgba: &mut [u8], w: usize, h: usize, tenths: i32, channels: usize) {
    let row = w * 4;
    let mut above = rgba[..row].to_vec();
    let mut current = rgba[..row].to_vec();
    for y in 0..h {
        let (head, tail) = rgba.split_at_mut((y + 1) * row);
        let out = &mut head[y * row..];
        // The last row repeats itself below.
        let below: &[u8] = if y + 1 < h { &tail[..row] } else { &current };
        for x in 0..w {
            let (l, r, here) = (x.saturating_sub(1) * 4, (x + 1).min(w - 1) * 4, x * 4);
            for c in 0..channels {
                let line = |buf: &[u8]| {
                    i32::from(buf[l + c]) + 2 * i32::from(buf[here + c]) + i32::from(buf[r + c])
                };
                // 16 × the blurred value.
                let sum = line(&above) + 2 * line(&current) + line(below);
                let v = i32::from(current[here + c]);
                // (160·v + tenths·(16·v − sum)) / 160, rounded.
                let scaled = 160 * v + tenths * (16 * v - sum);
                out[here + c] = ((scaled + 80).div_euclid(160)).clamp(0, 255) as u8;
            }
        }
        if y + 1 < h {
            std::mem::swap(&mut above, &mut current);
            current.copy_from_slice(&tail[..row]);
        }
    }
}

#[cfg(test)]
mod tests;
