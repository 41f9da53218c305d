// Makes the bench's two derived photographs with sharp (run by scripts/bench-images, once):
//   node fixtures.mjs <gnome pixels-l.webp> <out 16.8 MP baseline .jpg> <two-wings.jpg> <out alpha .png>
// - a 4096x4096 gnome-backgrounds WebP re-encoded as a baseline JPEG (quality 92, 4:2:0),
//   the 12 MP+ camera-size source the image issue asks for;
// - the 2560x1600 TwoWings photograph with a radial alpha vignette, as an RGBA PNG.
import sharp from "sharp";

const [webp, jpegOut, photo, pngOut] = process.argv.slice(2);
await sharp(webp).jpeg({ quality: 92, progressive: false, mozjpeg: false }).toFile(jpegOut);
const { width, height } = await sharp(photo).metadata();
const mask = Buffer.from(
  `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
    `<defs><radialGradient id="g" cx="50%" cy="50%" r="60%">` +
    `<stop offset="55%" stop-color="#fff" stop-opacity="1"/><stop offset="100%" stop-color="#fff" stop-opacity="0"/>` +
    `</radialGradient></defs><rect width="100%" height="100%" fill="url(#g)"/></svg>`,
);
await sharp(photo).ensureAlpha().composite([{ input: mask, blend: "dest-in" }]).png().toFile(pngOut);
