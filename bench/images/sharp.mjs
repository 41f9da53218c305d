// sharp (libvips), natively in Node: the fast-path reference for scripts/bench-images.
// Usage: node sharp.mjs <source.jpg> <width> <quality> <iterations> <out.webp> [webp|avif] [filters]
// (`filters`: rotate 90° before the resize, then a Gaussian blur of σ 2.5 and a sharpen of
// σ 1: run.mjs's filtered pipeline, course-edge's rotate=90,blur=5,sharpen=1; `attention`:
// a square cover crop placed by libvips' attention strategy, course-edge's gravity=auto;
// `animated`: every frame of an animated source, as an animated WebP.)
// (AVIF at effort 4: libheif + libaom, what the speed issue reports beside ours.)
// Prints one JSON line: per-iteration wall times (decode, resize and encode are one fused
// libvips pipeline, so there are no stage times), output size, and peak RSS growth.
import { readFileSync, writeFileSync } from "node:fs";
import sharp from "sharp";

const [src, width, quality, iterations, out, format = "webp", ops = ""] = process.argv.slice(2);
const input = readFileSync(src);
const baseline = process.memoryUsage().rss;
const times = [];
let output;
let info;
for (let i = 0; i < Number(iterations); i++) {
  const start = performance.now();
  let pipeline = sharp(input, ops === "animated" ? { animated: true } : {});
  if (ops === "filters") pipeline = pipeline.rotate(90);
  pipeline =
    ops === "attention"
      ? pipeline.resize({ width: Number(width), height: Number(width), fit: "cover", position: sharp.strategy.attention })
      : pipeline.resize({ width: Number(width), withoutEnlargement: true });
  if (ops === "filters") pipeline = pipeline.blur(2.5).sharpen({ sigma: 1 });
  ({ data: output, info } = await pipeline
    [format](format === "avif" ? { quality: Number(quality), effort: 4 } : { quality: Number(quality) })
    .toBuffer({ resolveWithObject: true }));
  times.push(performance.now() - start);
}
writeFileSync(out, output);
const peakKiB = process.resourceUsage().maxRSS;
console.log(
  JSON.stringify({
    times,
    bytes: output.length,
    size: `${info.width}x${info.height}`,
    peak_rss_growth_mib: Math.max(0, peakKiB * 1024 - baseline) / 1048576,
    threads: sharp.concurrency(),
    versions: { sharp: sharp.versions.sharp, libvips: sharp.versions.vips, libwebp: sharp.versions.webp },
  }),
);
