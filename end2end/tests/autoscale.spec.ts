// Autoscaling seen from the browser: a liveview with --autoscale 1..2 brings its servers
// to MIN at start, and when responses pass 2 s it starts the stopped one. Each decision
// is an `autoscale` item of the monitoring page's feed with its reason, and the live
// view shows the server stopped and started again.
import { test, expect } from '@playwright/test';
import { freshDataDir, startLiveview, stopLiveview } from './support';

const PORT = Number(process.env.E2E_AUTOSCALE_PORT ?? 3904);

test('autoscale decisions are in the feed with their reasons, and on the canvas', async ({ page, request }) => {
  test.setTimeout(90_000);
  const base = `http://127.0.0.1:${PORT}`;
  const server = await startLiveview(PORT, freshDataDir(), ['--servers', '2', '--autoscale', '1..2', '--autoscale-every-ms', '200']);
  try {
    await page.goto(`${base}/`);
    await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
    // MIN is 1: server-2 is stopped, and the live view says so.
    await expect(page.getByTestId('component-server-2')).toHaveAttribute('data-health', 'stopped', { timeout: 15_000 });
    await expect(page.getByTestId('component-server-1')).toHaveAttribute('data-health', 'healthy');

    // The metrics snapshots the monitoring page's socket receives, by their timestamps.
    const snapshots: number[] = [];
    page.on('websocket', (socket) => {
      if (!socket.url().endsWith('/ws/metrics')) return;
      socket.on('framereceived', ({ payload }) => {
        const frame = JSON.parse(payload.toString());
        if (frame.type === 'metrics') snapshots.push(Date.parse(frame.data.timestamp));
      });
    });
    await page.goto(`${base}/analytics/realtime`);
    await expect(page.getByTestId('metrics-connection')).toHaveAttribute('data-state', 'live');
    await page.getByTestId('feed-filter').selectOption('autoscale');
    const decisions = page.getByTestId('feed').locator('[data-kind="autoscale"]');
    await expect(decisions.first()).toContainText("Stopped server-2 (2 → 1 servers): keeping the autoscaler's count of 1, not 2", { timeout: 15_000 });

    // Every database operation waits 2.5 s and logins keep coming: responses pass 2 s.
    const slow = await request.put(`${base}/api/live-view/controls`, { data: { delays: { databaseOperation: 2500 } } });
    expect(slow.status()).toBe(200);
    const load = await request.post(`${base}/api/live-view/simulate`, { data: { type: 'login', count: 40, interval: 100 } });
    expect(load.status()).toBe(202);
    await expect(decisions.first()).toContainText(/Started server-2 \(1 → 2 servers\): (response time \d+ ms above 2000 ms|CPU \d+ % above 70 %)/, { timeout: 45_000 });
    await expect(decisions).toHaveCount(2);
    // The figures keep coming every 5 s while writes queue behind the slow database.
    const started = Date.now();
    await expect.poll(() => snapshots.filter((at) => at >= started).length, { timeout: 12_000 }).toBeGreaterThanOrEqual(2);
    await page.screenshot({ path: 'test-results/autoscale-feed.png', fullPage: true });

    await request.put(`${base}/api/live-view/controls`, { data: { delays: { databaseOperation: 0 } } });
    await page.goto(`${base}/`);
    await expect(page.getByTestId('component-server-2')).toHaveAttribute('data-health', 'healthy', { timeout: 15_000 });
    await page.screenshot({ path: 'test-results/autoscale-live-view.png' });
  } finally {
    await stopLiveview(server);
  }
});
