// The two in-Workers alternatives course-edge is compared with, run by scripts/bench-images
// inside the same workerd as course-edge. POST a JPEG or PNG to /wio or /jsquash with ?width=&quality=;
// the answer is the WebP, with per-stage times in Server-Timing (same names as course-edge:
// decode, resize, encode). /jsquash?format=avif answers AVIF instead (libavif + libaom, at jSquash's
// default speed 6 unless ?speed= says otherwise). Each library is instantiated on first use only, so a process that
// serves one of them holds only that library's memory (the script starts one process per library).
import { ImageConverter } from "wasm-image-optimization/workerd";
import decodeJpeg, { init as initJpegDecode } from "@jsquash/jpeg/decode.js";
import decodePng, { init as initPngDecode } from "@jsquash/png/decode.js";
import encodeWebp, { init as initWebpEncode } from "@jsquash/webp/encode.js";
import encodeAvif, { init as initAvifEncode } from "@jsquash/avif/encode.js";
import resize, { initResize } from "@jsquash/resize";
import JPEG_DEC_WASM from "@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm";
import WEBP_ENC_SIMD_WASM from "@jsquash/webp/codec/enc/webp_enc_simd.wasm";
import RESIZE_WASM from "@jsquash/resize/lib/resize/pkg/squoosh_resize_bg.wasm";
import PNG_DEC_WASM from "@jsquash/png/codec/pkg/squoosh_png_bg.wasm";
import AVIF_ENC_WASM from "@jsquash/avif/codec/enc/avif_enc.wasm";

let wio;
let jsquashReady;
let avifReady;

// Every WebAssembly memory the libraries create, so each answer can report their linear
// memory: what counts against the isolate's 128 MB besides the JS heap (course-edge reports
// its own as x-edge-memory-linear). Memories only grow, so the last value is the peak.
const memories = new Set();
function collect(instance, imports) {
  const found = [
    ...Object.values(instance?.exports ?? {}),
    ...Object.values(imports ?? {}).flatMap((ns) => Object.values(ns ?? {})),
  ];
  for (const v of found) if (v instanceof WebAssembly.Memory) memories.add(v);
}
const instantiate = WebAssembly.instantiate;
WebAssembly.instantiate = async function (source, imports) {
  const result = await instantiate.call(this, source, imports);
  collect(result.instance ?? result, imports);
  return result;
};
const Instance = WebAssembly.Instance;
WebAssembly.Instance = function (module, imports) {
  const instance = new Instance(module, imports);
  collect(instance, imports);
  return instance;
};
WebAssembly.Instance.prototype = Instance.prototype;
const linearBytes = () => [...memories].reduce((n, m) => n + m.buffer.byteLength, 0);

function timed(stages, name, f) {
  const start = Date.now();
  const out = f();
  if (out instanceof Promise) {
    return out.then((v) => {
      stages.push([name, Date.now() - start]);
      return v;
    });
  }
  stages.push([name, Date.now() - start]);
  return out;
}

// wasm-image-optimization: the same calls, in the same order, as its optimizeImage()
// (2.0.11), split so each stage can be timed.
async function runWio(bytes, width, quality, stages) {
  if (!wio) wio = await ImageConverter.create();
  const mod = await wio.getModule();
  const inst = mod.create_instance();
  try {
    if (!timed(stages, "decode", () => mod.load_image(inst, bytes))) throw new Error("load_image failed");
    timed(stages, "resize", () => mod.resize(inst, width, 0, 0 /* contain */));
    // format 2 = WebP; speed 6 is optimizeImage's default.
    const out = timed(stages, "encode", () => mod.encode(inst, 2, quality, 6, false));
    if (!out) throw new Error("encode failed");
    return { data: new Uint8Array(out), width: mod.get_width(inst), height: mod.get_height(inst) };
  } finally {
    mod.destroy_instance(inst);
  }
}

async function runJsquash(bytes, width, quality, stages, params) {
  if (!jsquashReady) {
    jsquashReady = Promise.all([
      initJpegDecode(JPEG_DEC_WASM),
      initPngDecode(PNG_DEC_WASM),
      initWebpEncode(WEBP_ENC_SIMD_WASM),
      initResize(RESIZE_WASM),
    ]);
  }
  await jsquashReady;
  const png = bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
  const decoded = await timed(stages, "decode", () => (png ? decodePng(bytes.buffer) : decodeJpeg(bytes.buffer)));
  const height = Math.max(1, Math.round((decoded.height * width) / decoded.width));
  // jSquash's documented defaults: lanczos3, premultiplied, in linear light.
  const resized = await timed(stages, "resize", () => resize(decoded, { width, height }));
  if (params.get("format") === "avif") {
    avifReady ??= initAvifEncode(AVIF_ENC_WASM);
    await avifReady;
    const speed = Number(params.get("speed") ?? 6);
    const out = await timed(stages, "encode", () => encodeAvif(resized, { quality, speed }));
    return { data: new Uint8Array(out), width, height, type: "image/avif" };
  }
  const out = await timed(stages, "encode", () => encodeWebp(resized, { quality }));
  return { data: new Uint8Array(out), width, height };
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const run = { "/wio": runWio, "/jsquash": runJsquash }[url.pathname];
    if (!run || request.method !== "POST") {
      return Response.json({ error: "POST /wio or /jsquash" }, { status: 404 });
    }
    const width = Number(url.searchParams.get("width") ?? 800);
    const quality = Number(url.searchParams.get("quality") ?? 80);
    const bytes = new Uint8Array(await request.arrayBuffer());
    const stages = [];
    try {
      const out = await run(bytes, width, quality, stages, url.searchParams);
      return new Response(out.data, {
        headers: {
          "content-type": out.type ?? "image/webp",
          "server-timing": stages.map(([n, d]) => `${n};dur=${d}`).join(", "),
          "x-bench-size": `${out.width}x${out.height}`,
          "x-bench-wasm-memory": String(linearBytes()),
        },
      });
    } catch (e) {
      return Response.json({ error: String(e && e.stack ? e.stack : e) }, { status: 500 });
    }
  },
};
