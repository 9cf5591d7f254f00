// The SPA mounts, its live indicator reaches "live", and it lists what /status lists.
import { test, expect } from '@playwright/test';

test('the SPA mounts, goes live and lists every server', async ({ page, request }) => {
  await page.goto('/');
  const indicator = page.getByTestId('connection');
  await expect(indicator).toHaveAttribute('data-state', 'live');
  await expect(page.getByTestId('connection-text')).toHaveText('Live');

  // The same facts as the server's JSON status: every component, by id.
  const status = await (await request.get('/status', { headers: { Accept: 'application/json' } })).json();
  const ids: string[] = status.components.map((c: { id: string }) => c.id);
  expect(ids).toEqual(['dashboard', 'load-balancer', 'server-1', 'server-2', 'server-3', 'database', 'smtp']);
  for (const id of ids) {
    await expect(page.getByTestId(`component-${id}`)).toHaveAttribute('data-health', 'healthy');
  }
  await expect(page.getByTestId('overall-status')).toHaveText(status.status);
  await expect(page.getByTestId('version')).toHaveText(status.version);
  // The dashboard counts this very page as a live viewer.
  await expect(page.getByTestId('component-dashboard')).toContainText('1 live viewer');
});

test('system:status keeps arriving, once a second', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
  const first = Number(await page.getByTestId('last-seq').textContent());
  await expect
    .poll(async () => Number(await page.getByTestId('last-seq').textContent()), { timeout: 5_000 })
    .toBeGreaterThanOrEqual(first + 2);
});

test('the SPA files carry the right content types and cache headers', async ({ request }) => {
  const index = await request.get('/');
  expect(index.headers()['content-type']).toContain('text/html');
  expect(index.headers()['cache-control']).toBe('no-cache');
  const html = await index.text();
  const wasm = html.match(/\/(frontend-[0-9a-f]+_bg\.wasm)/);
  expect(wasm, 'index.html references the hashed wasm').not.toBeNull();
  const asset = await request.get(`/${wasm![1]}`);
  expect(asset.status()).toBe(200);
  expect(asset.headers()['content-type']).toBe('application/wasm');
  expect(asset.headers()['cache-control']).toBe('public, max-age=31536000, immutable');
});
