// /status is complete as the server sends it: no JavaScript needed.
import { test, expect } from '@playwright/test';
import { componentIds } from './support';

test.use({ javaScriptEnabled: false });

test('/status renders every component with JavaScript disabled', async ({ page }) => {
  const response = await page.goto('/status');
  expect(response?.status()).toBe(200);
  expect(response?.headers()['content-type']).toContain('text/html');
  await expect(page).toHaveTitle(/Live View status: (healthy|degraded|critical)/);
  await expect(page.getByTestId('overall-status')).toHaveText('healthy');
  for (const id of componentIds()) {
    await expect(page.getByTestId(`component-${id}`)).toHaveAttribute('data-health', 'healthy');
  }
  await expect(page.getByTestId('component-database')).toContainText('SELECT 1 in');
  await expect(page.getByTestId('component-smtp')).toContainText('220 greeting in');
  // Nothing to download and run: leptos_axum's inline resource bootstrap is the only script.
  expect(await page.locator('script[src]').count()).toBe(0);
});
