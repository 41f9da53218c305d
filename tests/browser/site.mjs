// The demo site in a real browser: Debian's Chromium, headless, driven by playwright-core,
// through the edge under test. Run by tests/tests/site.rs (which starts the stack):
//   node tests/browser/site.mjs <edge base URL> <artefact dir>
// It checks, and prints as it goes: image formats by negotiation and that each decoded
// image is the srcset candidate the browser chose, at two viewport widths; no layout
// shift; no console errors; an anonymous visitor gets the anonymous page from the cache;
// sign-in shows the member's name and plan's call to action; sign-out removes it; the
// lesson video plays. Screenshots go to the artefact dir. Exit status 1 on a failure.
import { chromium } from 'playwright-core';
import { join } from 'node:path';

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error('usage: node tests/browser/site.mjs <edge base URL> <artefact dir>');
  process.exit(2);
}

const failures = [];
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
  // As root on a closed network (see ../shared/notes/toolchain.md).
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ],
});

/** A fresh visitor (own cookies) at one viewport, recording errors and image answers;
 * `vid` fixes its visitor id (so two visitors share an experiment arm). */
async function visitor(viewport, deviceScaleFactor, vid) {
  const context = await browser.newContext({ viewport, deviceScaleFactor });
  if (vid) await context.addCookies([{ name: 'ce_vid', value: vid, url: base }]);
  const page = await context.newPage();
  const errors = [];
  const images = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.startsWith('/img/')) {
      images.push({ url: r.url(), status: r.status(), type: r.headers()['content-type'] });
    }
  });
  return { context, page, errors, images };
}

/** Waits for the eager images, then reports each loaded <img>'s choice and decode. */
async function loadedImages(page) {
  await page.waitForFunction(
    () => [...document.images].filter((i) => i.loading === 'eager')
      .every((i) => i.complete && i.naturalWidth > 0),
    null, { timeout: 90_000 },
  );
  // An <img> chosen from a w-descriptor srcset reports its natural size corrected by the
  // candidate's density, so the decoded pixels are read from a plain Image of currentSrc.
  return page.evaluate(() => Promise.all([...document.images]
    .filter((i) => i.complete && i.naturalWidth > 0 && i.srcset)
    .map(async (i) => {
      const probe = new Image();
      probe.src = i.currentSrc;
      await probe.decode();
      return {
        currentSrc: i.currentSrc, naturalWidth: probe.naturalWidth,
        rendered: i.getBoundingClientRect().width, dpr: window.devicePixelRatio,
      };
    })));
}

/** Cumulative layout shift so far (the browser's own layout-shift entries). */
const layoutShift = (page) => page.evaluate(() => new Promise((resolve) => {
  let total = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (!e.hadRecentInput) total += e.value;
  }).observe({ type: 'layout-shift', buffered: true });
  setTimeout(() => resolve(total), 300);
}));

try {
  // 1. The catalog at two widths: formats, chosen candidates, decoded sizes, stability.
  const chosen = {};
  for (const [name, viewport, dpr] of [
    ['desktop', { width: 1280, height: 900 }, 1],
    ['mobile', { width: 390, height: 844 }, 2],
  ]) {
    const v = await visitor(viewport, dpr);
    const response = await v.page.goto(`${base}/`, { waitUntil: 'load' });
    check(response.status() === 200, `${name}: the catalog answers 200`);
    const imgs = await loadedImages(v.page);
    check(imgs.length >= 3, `${name}: ${imgs.length} responsive images loaded`);
    for (const img of imgs) {
      const w = Number((img.currentSrc.match(/\/img\/w=(\d+)/) || [])[1]);
      check(img.naturalWidth === w,
        `${name}: decoded width ${img.naturalWidth} is the chosen candidate w=${w} (${img.currentSrc.replace(base, '')})`);
      check(w >= Math.min(img.rendered * img.dpr, 2560) * 0.99 || w === 2560,
        `${name}: candidate ${w} covers the slot (${Math.round(img.rendered)} px × ${img.dpr})`);
    }
    chosen[name] = imgs[0] && imgs[0].currentSrc;
    const formats = [...new Set(v.images.map((i) => i.type))];
    check(v.images.length > 0 && v.images.every((i) => i.status === 200
      && ['image/avif', 'image/webp'].includes(i.type)),
    `${name}: every image answer is AVIF or WebP by negotiation (${formats.join(', ')})`);
    const cls = await layoutShift(v.page);
    check(cls < 0.001, `${name}: no layout shift from images (CLS ${cls.toFixed(4)})`);
    await v.page.screenshot({ path: join(outDir, `catalog-${name}.png`), fullPage: false });
    check(v.errors.length === 0, `${name}: no console errors ${JSON.stringify(v.errors)}`);
    await v.context.close();
  }
  check(chosen.desktop !== chosen.mobile,
    `the two widths chose different candidates (${chosen.desktop.replace(base, '')} vs ${chosen.mobile.replace(base, '')})`);

  // 2. Anonymous visitors share the cached anonymous page.
  const course = `${base}/courses/rust-beginner`;
  // Both in one arm of the site's experiment: the same visitor id, two browsers.
  const vid = '0123456789abcdef0123456789abcdef';
  const anon = await visitor({ width: 1280, height: 900 }, 1, vid);
  await anon.page.goto(course);
  const anon2 = await visitor({ width: 1280, height: 900 }, 1, vid);
  const again = await anon2.page.goto(course);
  const anonText = await anon2.page.textContent('body');
  check(['HIT', 'STALE', 'REVALIDATED'].includes(again.headers()['x-edge-cache']),
    `an anonymous visitor gets the page from the edge cache (${again.headers()['x-edge-cache']})`);
  check(anonText.includes('Sign in to enrol') && !anonText.includes('Hi,'),
    'the anonymous variant: sign-in call to action, no greeting');
  await anon.context.close();

  // 3. Sign in through the form: the name and the plan's call to action appear.
  const ada = anon2;
  await ada.page.click('text=Sign in to enrol');
  await ada.page.fill('#email', 'ada@example.com');
  await ada.page.fill('#password', 'demo-password-ada');
  await Promise.all([ada.page.waitForURL(course), ada.page.click('button[type=submit]')]);
  const signedIn = await ada.page.textContent('body');
  check(signedIn.includes('Hi, Ada'), 'signed in: the page greets Ada');
  check(signedIn.includes('Start the course') && !signedIn.includes('Sign in to enrol'),
    "signed in: the member's call to action");
  await loadedImages(ada.page);
  await ada.page.screenshot({ path: join(outDir, 'course-signed-in.png') });

  // 4. The lesson video plays.
  await ada.page.click('text=Start the course');
  await ada.page.waitForSelector('video');
  const played = await ada.page.evaluate(async () => {
    const video = document.querySelector('video');
    video.muted = true;
    await video.play();
    const start = video.currentTime;
    await new Promise((r) => setTimeout(r, 1500));
    return { start, now: video.currentTime, error: video.error && video.error.message };
  });
  check(played.now > played.start + 0.5,
    `the lesson video plays (currentTime ${played.start.toFixed(2)} → ${played.now.toFixed(2)}${played.error ? `, ${played.error}` : ''})`);
  await ada.page.screenshot({ path: join(outDir, 'lesson.png') });

  // 5. Sign out: the name is gone on the next page.
  await Promise.all([ada.page.waitForURL(`${base}/`), ada.page.click('text=Sign out')]);
  await ada.page.goto(course);
  const after = await ada.page.textContent('body');
  check(!after.includes('Ada') && after.includes('Sign in to enrol'),
    'after sign-out the name is gone on the next page');
  await ada.page.screenshot({ path: join(outDir, 'signed-out.png') });
  check(ada.errors.length === 0, `signed-in journey: no console errors ${JSON.stringify(ada.errors)}`);
  await ada.context.close();
} catch (e) {
  failures.push(String(e && e.stack || e));
  console.log(`FAIL ${e && e.stack || e}`);
} finally {
  await browser.close();
}

console.log(failures.length ? `browser test: ${failures.length} failed` : 'browser test: all passed');
process.exit(failures.length ? 1 : 0);
