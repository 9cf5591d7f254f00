// Regenerates the README's screenshots: `node screenshot.mjs` with liveview running on
// E2E_PORT (default 3000). Uses Debian's Chromium, like the specs.
import { chromium } from '@playwright/test';

const port = process.env.E2E_PORT ?? '3000';
const out = new URL('../docs/', import.meta.url).pathname;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
const page = await browser.newPage({ viewport: { width: 1200, height: 720 } });
await page.goto(`http://127.0.0.1:${port}/`);
await page.locator('[data-testid="connection"][data-state="live"]').waitFor();
// Let the first figures refresh and the stale-dimming fade out.
await page.waitForTimeout(1500);
await page.screenshot({ path: `${out}screenshot.png` });
await page.setViewportSize({ width: 800, height: 900 });
await page.screenshot({ path: `${out}screenshot-tablet.png` });
const status = await browser.newPage({ viewport: { width: 1200, height: 720 }, javaScriptEnabled: false });
await status.goto(`http://127.0.0.1:${port}/status`);
await status.screenshot({ path: `${out}status-page.png` });
await browser.close();
