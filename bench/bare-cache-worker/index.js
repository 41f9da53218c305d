// The baseline for scripts/bench-edge: the least a Cache API hit can cost in workerd.
// GET /?bytes=N does one `caches.default.match` of an N-byte entry and returns it as is
// (the entry is put once, on the first request). The edge's HIT path — key, metadata,
// freshness, headers, streaming the stored body — is measured against it in the same
// run, so the ratio is what our cache code costs on top of the Cache API itself.
export default {
  async fetch(request) {
    const bytes = Number(new URL(request.url).searchParams.get("bytes") || 300);
    const key = `https://bare.bench.internal/${bytes}`;
    const hit = await caches.default.match(key);
    if (hit) return hit;
    const body = "x".repeat(bytes);
    const response = new Response(body, {
      headers: {
        "content-type": "application/octet-stream",
        "content-length": String(bytes),
        "cache-control": "public, max-age=3600",
      },
    });
    await caches.default.put(key, response.clone());
    return response;
  },
};
