// The business monitoring page (/analytics/realtime): it goes live on /ws/metrics, its
// counters and feed follow simulated traffic, the feed filters, the trend charts switch
// range, the map shades countries, a critical alert gets a toast, and without
// WebSockets it polls the REST snapshot.
import { test, expect, APIRequestContext, Page } from '@playwright/test';

async function simulate(request: APIRequestContext, type: string, count: number): Promise<void> {
  const answer = await request.post('/api/live-view/simulate', { data: { type, count, interval: 50 } });
  expect(answer.status()).toBe(202);
}

async function open(page: Page): Promise<void> {
  await page.goto('/analytics/realtime');
  await expect(page.getByTestId('metrics-connection')).toHaveAttribute('data-state', 'live');
}

test('the live view links to the monitoring page and back', async ({ page }) => {
  await page.goto('/');
  await page.getByTestId('to-monitoring').click();
  await expect(page).toHaveURL(/\/analytics\/realtime$/);
  await expect(page.getByTestId('monitoring')).toBeVisible();
  await page.getByTestId('to-live-view').click();
  await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
});

test('counters and the feed follow the traffic, and the feed filters by type', async ({ page, request }) => {
  await open(page);
  const revenue = page.getByTestId('counter-revenue-today');
  await expect(revenue).toHaveAttribute('data-value', /\d/);
  const before = Number(await revenue.getAttribute('data-value'));
  const signupsBefore = Number(await page.getByTestId('counter-signups').getAttribute('data-value'));
  await simulate(request, 'purchase', 5);
  await simulate(request, 'signup', 3);
  await expect.poll(async () => Number(await revenue.getAttribute('data-value')), { timeout: 20_000 }).toBeGreaterThan(before);
  await expect
    .poll(async () => Number(await page.getByTestId('counter-signups').getAttribute('data-value')), { timeout: 20_000 })
    .toBeGreaterThanOrEqual(signupsBefore + 3);
  // The counter counts up to the new value.
  await expect.poll(async () => Number((await revenue.textContent())?.replace(/[^\d.]/g, '')), { timeout: 5_000 })
    .toBeCloseTo(Number(await revenue.getAttribute('data-value')), 1);
  const feed = page.getByTestId('feed');
  await expect(feed.locator('[data-kind="payment"]').first()).toBeVisible();
  await expect(feed.locator('[data-kind="signup"]').first()).toBeVisible();
  // A new signup gets a toast.
  await expect(page.locator('[data-testid="toast"][data-kind="signup"]').first()).toBeVisible();

  await page.getByTestId('feed-filter').selectOption('signup');
  const kinds = await feed.locator('[data-testid="feed-item"]').evaluateAll((items) => items.map((item) => item.getAttribute('data-kind')));
  expect(kinds.length).toBeGreaterThan(0);
  expect(new Set(kinds)).toEqual(new Set(['signup']));

  // Hovering pauses the feed: what arrives waits until the pointer leaves.
  await page.getByTestId('feed-filter').selectOption('');
  await feed.hover();
  await expect(page.getByTestId('feed-paused')).toBeVisible();
  const shown = await feed.locator('[data-testid="feed-item"]').count();
  await simulate(request, 'login', 2);
  await expect(page.getByTestId('feed-paused')).toContainText(/[1-9]\d* waiting/, { timeout: 15_000 });
  expect(await feed.locator('[data-testid="feed-item"]').count()).toBe(shown);
  await page.mouse.move(0, 0);
  await expect(page.getByTestId('feed-paused')).toHaveCount(0);
  await expect.poll(() => feed.locator('[data-testid="feed-item"]').count()).toBeGreaterThan(shown);

  // An item links to its request's journey in the live view.
  const link = feed.locator('a.feed-text').first();
  await expect(link).toHaveAttribute('href', /^\/#request=/);
  await page.screenshot({ path: 'test-results/monitoring.png', fullPage: true });
});

test('the trend charts switch between the live points and the stored ranges', async ({ page }) => {
  await open(page);
  const chart = page.getByTestId('chart-revenue');
  await expect(chart).toHaveAttribute('data-range', 'Live');
  await page.getByTestId('chart-revenue-range-1h').click();
  await expect(chart).toHaveAttribute('data-range', 'Hour');
  // One point a minute for the hour (the still-filling one included).
  await expect.poll(async () => Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(60);
  await page.getByTestId('chart-revenue-range-30d').click();
  await expect(chart).toHaveAttribute('data-range', 'Month');
  await expect.poll(async () => Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(30);
  await expect.poll(async () => Number(await chart.getAttribute('data-points'))).toBeLessThanOrEqual(32);
  // A chosen span: the last two hours, by minute.
  const now = new Date();
  const local = (d: Date) => new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
  await page.getByTestId('chart-active-users-from').fill(local(new Date(now.getTime() - 2 * 3_600_000)));
  await page.getByTestId('chart-active-users-to').fill(local(now));
  await page.getByTestId('chart-active-users-apply').click();
  const users = page.getByTestId('chart-active-users');
  await expect(users).toHaveAttribute('data-range', /^Custom/);
  await expect.poll(async () => Number(await users.getAttribute('data-points'))).toBeGreaterThanOrEqual(119);
});

test('the map shades the countries of active users', async ({ page, request }) => {
  await open(page);
  const map = page.getByTestId('map');
  await expect.poll(async () => Number(await map.getAttribute('data-shapes'))).toBeGreaterThan(170);
  await simulate(request, 'purchase', 6);
  // Virtual users come from public addresses: some of them land in a country.
  await expect(page.getByTestId('map-country').first()).toBeVisible({ timeout: 20_000 });
  await expect(page.getByTestId('map-country').first()).toHaveAttribute('data-country', /^[A-Z]{2}$/);
});

test('a critical alert gets a toast and shows in the health bar', async ({ page, request }) => {
  const saved = await (await request.get('/api/v1/alert-rules')).json();
  // Critical as soon as there is any traffic at all.
  const rule = {
    id: 'any-traffic', name: 'Any traffic', signal: 'requestsPerSecond', comparison: 'above',
    levels: [{ severity: 'critical', threshold: 0, recover: 0 }], forSeconds: 0, keepFiringSeconds: 60,
  };
  expect((await request.put('/api/v1/alert-rules', { data: { rules: [rule] } })).status()).toBe(200);
  try {
    await open(page);
    await simulate(request, 'purchase', 40);
    const toast = page.locator('[data-testid="toast"][data-kind="critical"]').first();
    await expect(toast).toBeVisible({ timeout: 20_000 });
    await expect(toast).toContainText('Critical alert: Any traffic');
    await expect(page.getByTestId('health-alerts')).toHaveClass(/bad/);
    // The alert list: links to the component and to the minute before it fired.
    const alert = page.getByTestId('alert').first();
    await expect(alert).toHaveAttribute('data-severity', 'critical');
    await expect(alert.getByTestId('alert-component')).toHaveAttribute('href', '/#component=load-balancer');
    await expect(alert.getByTestId('alert-replay')).toHaveAttribute('href', /^\/#replay=\d+-\d+$/);
    await page.screenshot({ path: 'test-results/monitoring-alert.png', fullPage: true });
    await alert.getByTestId('alert-ack').click();
    await expect(alert).toContainText('acknowledged');
    const listed = await (await request.get('/api/v1/alerts')).json();
    expect(listed.alerts[0].acknowledgedBy).toBe('anonymous');
    // On the canvas: the live view opens the balancer's card.
    await alert.getByTestId('alert-component').click();
    await expect(page.getByTestId('node-load-balancer')).toHaveClass(/selected/);
    // The minute before it fired, replayed.
    await page.goto('/analytics/realtime');
    await page.getByTestId('alert-replay').first().click();
    await expect(page.getByTestId('replay-badge')).toBeVisible();
  } finally {
    expect((await request.put('/api/v1/alert-rules', { data: { rules: saved.rules } })).status()).toBe(200);
  }
});

test('without WebSockets the page polls the REST snapshot', async ({ page, request }) => {
  await page.routeWebSocket(/\/ws\/metrics/, (socket) => socket.close());
  await page.goto('/analytics/realtime');
  const link = page.getByTestId('metrics-connection');
  await expect(link).toHaveAttribute('data-state', 'polling', { timeout: 20_000 });
  const revenue = page.getByTestId('counter-revenue-today');
  await expect(revenue).toHaveAttribute('data-value', /\d/);
  const before = Number(await revenue.getAttribute('data-value'));
  await simulate(request, 'purchase', 3);
  await expect.poll(async () => Number(await revenue.getAttribute('data-value')), { timeout: 20_000 }).toBeGreaterThan(before);
});

test('the page fits a phone', async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await open(page);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  expect(overflow).toBeLessThanOrEqual(1);
  await page.screenshot({ path: 'test-results/monitoring-phone.png', fullPage: true });
});
