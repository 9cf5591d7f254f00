// The SPA mounts, its live indicator reaches "live", and it lists what /status lists.
import { test, expect } from '@playwright/test';
import { componentIds } from './support';

test('the SPA mounts, goes live and lists every server', async ({ page, request }) => {
  await page.goto('/');
  const indicator = page.getByTestId('connection');
  await expect(indicator).toHaveAttribute('data-state', 'live');
  await expect(page.getByTestId('connection-text')).toHaveText('Live');

  // The same facts as the server's JSON status: every component, by id.
  const status = await (await request.get('/status', { headers: { Accept: 'application/json' } })).json();
  const ids: string[] = status.components.map((c: { id: string }) => c.id);
  expect(ids).toEqual(componentIds());
  for (const id of ids) {
    await expect(page.getByTestId(`component-${id}`)).toHaveAttribute('data-health', 'healthy');
  }
  await expect(page.getByTestId('overall-status')).toHaveText(status.status);
  await expect(page.getByTestId('version')).toHaveText(status.version);
  // The dashboard counts this very page as a live viewer.
  await expect(page.getByTestId('component-dashboard')).toContainText('1 live viewer');
});

test('system:status keeps arriving, once a second', async ({ page }) => {
  // When each system:status on the page's own live socket was gathered.
  const gathered: number[] = [];
  page.on('websocket', (socket) => {
    if (!socket.url().includes('/api/live-view/ws')) return;
    socket.on('framereceived', ({ payload }) => {
      if (typeof payload !== 'string') return;
      const frame = JSON.parse(payload);
      for (const envelope of Array.isArray(frame) ? frame : [frame]) {
        if (envelope.topic === 'system:status') gathered.push(Date.parse(envelope.payload.timestamp));
      }
    });
  });
  await page.goto('/');
  await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
  const first = Number(await page.getByTestId('last-seq').textContent());
  await expect
    .poll(async () => Number(await page.getByTestId('last-seq').textContent()), { timeout: 5_000 })
    .toBeGreaterThanOrEqual(first + 2);
  await expect.poll(() => gathered.length, { timeout: 5_000, message: 'three system:status' }).toBeGreaterThanOrEqual(3);
  // Once a second: each gathered about a second after the one before.
  const apart = gathered.slice(1).map((at, i) => at - gathered[i]);
  for (const ms of apart) {
    expect(ms, `statuses ${apart.join(', ')} ms apart`).toBeGreaterThanOrEqual(500);
    expect(ms, `statuses ${apart.join(', ')} ms apart`).toBeLessThanOrEqual(2_000);
  }
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
