// The baseline for scripts/bench-edge: a worker that answers every request with a
// constant JSON body of BODY_BYTES bytes, doing no other work. The edge's cached path is
// measured against it in the same workerd, so the ratio is what our code costs.
export default {
  async fetch(request, env) {
    const size = Number(env.BODY_BYTES || 1024);
    if (!globalThis.body || globalThis.body.length !== size) {
      globalThis.body = '{"pad":"' + "x".repeat(Math.max(0, size - 10)) + '"}';
    }
    return new Response(globalThis.body, {
      headers: { "content-type": "application/json", "cache-control": "public, max-age=60" },
    });
  },
};
