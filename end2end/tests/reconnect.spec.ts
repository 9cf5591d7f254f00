// Stopping the server makes the indicator say "reconnecting"; starting it again on the
// same address brings it back to "live" without reloading the page.
import { test, expect } from '@playwright/test';
import { freshDataDir, startLiveview, stopLiveview } from './support';

const PORT = Number(process.env.E2E_RECONNECT_PORT ?? 3902);

test('the indicator goes reconnecting, then live again after a restart', async ({ page }) => {
  const dataDir = freshDataDir();
  let server = await startLiveview(PORT, dataDir);
  try {
    await page.goto(`http://127.0.0.1:${PORT}/`);
    const indicator = page.getByTestId('connection');
    await expect(indicator).toHaveAttribute('data-state', 'live');

    expect(await stopLiveview(server)).toBe(0);
    await expect(indicator).toHaveAttribute('data-state', 'reconnecting');
    await expect(page.getByTestId('connection-text')).toContainText('Connection lost — reconnecting');
    // Still reconnecting, with a growing attempt count, while the server is down.
    await expect(page.getByTestId('connection-text')).toContainText(/attempt [2-9]/, { timeout: 10_000 });

    server = await startLiveview(PORT, dataDir);
    await expect(indicator).toHaveAttribute('data-state', 'live', { timeout: 20_000 });
    await expect(page.getByTestId('component-server-1')).toBeVisible();
  } finally {
    await stopLiveview(server);
  }
});
