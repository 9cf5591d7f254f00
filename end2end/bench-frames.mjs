// Frame-time benchmark (not a test): `node bench-frames.mjs` with liveview running on
// E2E_PORT (default 3000) and the SPA built. Real requests through the balancer keep
// bubbles in flight; the page's own requestAnimationFrame intervals are measured in
// Debian's Chromium, headless. Prints p50/p95 frame times at each bubble count, and the
// wasm's size raw, gzip and brotli.
import { chromium } from '@playwright/test';
import { readdirSync, readFileSync } from 'node:fs';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';

const port = process.env.E2E_PORT ?? '3000';
const base = `http://127.0.0.1:${port}`;
const targets = (process.env.BUBBLES ?? '500,2000').split(',').map(Number);
const dist = new URL('../dist/', import.meta.url).pathname;

const wasm = readdirSync(dist).find((name) => name.endsWith('_bg.wasm'));
const bytes = readFileSync(dist + wasm);
const brotli = brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
console.log(`wasm ${wasm}: raw ${bytes.length} B, gzip ${gzipSync(bytes, { level: 9 }).length} B, brotli ${brotli} B`);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
await page.goto(base);
await page.locator('[data-testid="connection"][data-state="live"]').waitFor();
// Slow playback keeps each bubble on the canvas longer, so fewer requests fill it.
await page.request.put(`${base}/api/live-view/controls`, { data: { playbackSpeed: 0.25 } });

for (const target of targets) {
  const started = Date.now();
  while ((await page.evaluate(() => window.__liveview.bubbles())) < target) {
    if (Date.now() - started > 120_000) throw new Error(`never reached ${target} bubbles`);
    await page.request.post(`${base}/api/live-view/simulate`, { data: { type: 'purchase', count: Math.ceil(target / 20), interval: 5 } });
    await page.waitForTimeout(500);
  }
  // Keep the count up while measuring.
  await page.request.post(`${base}/api/live-view/simulate`, { data: { type: 'purchase', count: Math.ceil(target / 4), interval: 10 } });
  const result = await page.evaluate(() => new Promise((resolve) => {
    const deltas = [];
    const counts = [];
    let last = performance.now();
    const end = last + 5000;
    const tick = (now) => {
      deltas.push(now - last);
      counts.push(window.__liveview.bubbles());
      last = now;
      if (now < end) requestAnimationFrame(tick); else resolve({ deltas, counts });
    };
    requestAnimationFrame(tick);
  }));
  const sorted = [...result.deltas].sort((a, b) => a - b);
  const pick = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const bubbles = [...result.counts].sort((a, b) => a - b)[Math.floor(result.counts.length / 2)];
  const work = await page.getByTestId('flow-canvas').getAttribute('data-work-ms');
  console.log(`~${target} bubbles (median ${bubbles} in flight): ${result.deltas.length} frames in 5 s, ` +
    `frame p50 ${pick(0.5).toFixed(1)} ms, p95 ${pick(0.95).toFixed(1)} ms, our work per frame ${work} ms`);
}
await page.request.put(`${base}/api/live-view/controls`, { data: {} });
await browser.close();
