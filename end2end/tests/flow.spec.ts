// The dashboard against a live `liveview`: the canvas animates real requests, nodes open
// their cards, the inspector lists real stages, and every control acts on the real system.
import { test, expect, Page, APIRequestContext } from '@playwright/test';
import { readFileSync } from 'node:fs';

/** Starts `count` real requests of `type` through the balancer; returns their ids. */
async function simulate(request: APIRequestContext, type: string, count = 1, step = false): Promise<string[]> {
  const answer = await request.post('/api/live-view/simulate', { data: { type, count, interval: 50, step } });
  expect(answer.status()).toBe(202);
  return (await answer.json()).requestIds;
}

async function live(page: Page) {
  await page.goto('/');
  await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
  await page.waitForFunction(() => (window as any).__liveview?.nodeCenter('database') !== null);
}

/** Clicks a node on the canvas itself, where the page says it is drawn. */
async function clickNode(page: Page, key: string) {
  const canvas = page.getByTestId('flow-canvas');
  await canvas.scrollIntoViewIfNeeded();
  const box = await canvas.boundingBox();
  const center = await page.evaluate((k) => (window as any).__liveview.nodeCenter(k), key);
  expect(center, `${key} is on the canvas`).not.toBeNull();
  await page.mouse.click(box!.x + center[0], box!.y + center[1]);
}

async function journey(request: APIRequestContext, id: string) {
  const answer = await request.get(`/api/live-view/requests/${id}`);
  return answer.ok() ? (await answer.json()).request : null;
}

/** Waits until the history (written in batches, once a second) holds every one of `ids` to its end. */
async function inHistory(request: APIRequestContext, ids: string[], since: number) {
  await expect
    .poll(async () => {
      const answer = await request.get(`/api/live-view/history?from=${since}&topics=request:complete`);
      const events: { payload: { requestId?: string } }[] = (await answer.json()).events;
      return ids.every((id) => events.some((event) => event.payload.requestId === id));
    }, { timeout: 20_000, message: `${ids.join(', ')} in the history` })
    .toBe(true);
}

test.afterEach(async ({ request }) => {
  // The server is shared by every spec: leave the controls and faults as found.
  await request.put('/api/live-view/controls', { data: {} });
  await request.put('/api/faults', { data: { smtp4xxRate: 0, smtp5xxRate: 0, smtpLatencyMs: 0 } });
});

test('a page opens one live connection and keeps it', async ({ page }) => {
  const sockets: string[] = [];
  page.on('websocket', (socket) => sockets.push(socket.url()));
  await live(page);
  // A fixed wait, for nothing to happen: no second connection is opened meanwhile.
  await page.waitForTimeout(2000);
  expect(sockets.filter((url) => url.includes('/api/live-view/ws'))).toHaveLength(1);
});

test('the canvas animates while requests flow', async ({ page, request }) => {
  await live(page);
  const canvas = page.getByTestId('flow-canvas');
  await simulate(request, 'purchase', 6);
  await expect.poll(() => page.evaluate(() => (window as any).__liveview.bubbles())).toBeGreaterThan(0);
  const first = await canvas.screenshot();
  await expect
    .poll(async () => (await canvas.screenshot()).equals(first), { message: 'pixels change between frames' })
    .toBe(false);
});

test('a header figure flashes when it changes, and only then', async ({ page }) => {
  await live(page);
  await expect(page.getByTestId('uptime-header')).not.toHaveText('–');
  const flashes = async (id: string) => Number(await page.getByTestId(id).getAttribute('data-flashes'));
  const uptime = await flashes('uptime-header');
  const errors = await flashes('error-rate');
  // Uptime changes every second: two changes of it; the error rate of an idle system
  // did not change meanwhile.
  await expect.poll(() => flashes('uptime-header')).toBeGreaterThanOrEqual(uptime + 2);
  expect(await flashes('error-rate')).toBe(errors);
  await expect(page.getByTestId('uptime-header')).toHaveClass(/flash/);
});

test('clicking a node on the canvas opens its card', async ({ page }) => {
  await live(page);
  await clickNode(page, 'database');
  const card = page.getByTestId('card-database');
  await expect(card).toBeVisible();
  await expect(card).toContainText('writes/s');
  await clickNode(page, 'load-balancer');
  await expect(page.getByTestId('card-load-balancer')).toContainText('server-1');
  await expect(page.getByTestId('algorithm')).toHaveValue('round-robin');
  await page.getByTestId('algorithm').selectOption('least-connections');
  await expect
    .poll(async () => (await (await page.request.get('/api/balancer')).json()).algorithm)
    .toBe('least-connections');
  await page.getByTestId('algorithm').selectOption('round-robin');
});

test('a request started through the API appears and its inspector lists every stage in order', async ({ page, request }) => {
  await live(page);
  // A purchase: its buyer is a virtual user whose socket acks the in-app notification, so
  // the journey completes (a new signup's user has no socket yet: its in-app waits).
  const [id] = await simulate(request, 'purchase');
  const row = page.getByTestId(`request-${id}`);
  await expect(row).toBeVisible();
  await row.getByRole('button').click();
  const inspector = page.getByTestId('inspector');
  await expect(inspector).toHaveAttribute('data-request', id);
  await expect(page.getByTestId('inspector-outcome')).toHaveText('completed', { timeout: 20_000 });
  const stages = await page.getByTestId('stage').evaluateAll((items) => items.map((item) => item.getAttribute('data-stage')));
  const server = await journey(request, id);
  expect(stages).toEqual(server.stages.map((stage: { stage: string }) => stage.stage));
  for (const expected of ['lb-received', 'lb-forwarded', 'server-received', 'middleware', 'controller', 'db-query',
    'notification-fanout', 'queue-add', 'response', 'worker-pickup', 'smtp-attempt', 'inapp-push', 'client-ack']) {
    expect(stages, `${expected} is listed`).toContain(expected);
  }
  expect(stages.indexOf('lb-received')).toBe(0);
  expect(stages.indexOf('db-query')).toBeLessThan(stages.indexOf('queue-add'));
  await expect(page.getByTestId('timeline').locator('.gantt-row')).toHaveCount(stages.length);
});

test('clicking a bubble opens its journey', async ({ page, request }) => {
  await live(page);
  // Slow playback: the bubble is easy to hit while it moves.
  await page.getByTestId('speed').fill('0.25');
  await expect(page.getByTestId('speed-badge')).toHaveText('0.25×');
  // Pause where the bubble is clear of every other one (two can wait on the same node,
  // and a retry left by an earlier spec may pass by). A bubble that ends its journey
  // before such a moment is replaced by a new purchase.
  const pause = page.getByTestId('pause');
  let id = '';
  let at: [number, number] | null = null;
  for (let purchase = 0; purchase < 5 && at === null; purchase++) {
    [id] = await simulate(request, 'purchase');
    const bubble = () => page.evaluate((r) => (window as any).__liveview.bubbleCenter(r), id);
    await expect.poll(bubble, { timeout: 30_000, message: `a bubble for ${id}` }).not.toBeNull();
    for (;;) {
      await pause.click();
      const seen: { gone: boolean; clear: [number, number] | null } = await page.evaluate((r) => {
        const lv = (window as any).__liveview;
        const center = lv.bubbleCenter(r);
        return { gone: center === null, clear: center && lv.bubbleAt(center[0], center[1]) === r ? center : null };
      }, id);
      at = seen.clear;
      if (at !== null) break;
      await pause.click();
      if (seen.gone) break;
      // Let the bubbles move on before the next try.
      await page.waitForTimeout(150);
    }
  }
  expect(at, 'the bubble was clear of others at some moment').not.toBeNull();
  const canvas = page.getByTestId('flow-canvas');
  await canvas.scrollIntoViewIfNeeded();
  const box = await canvas.boundingBox();
  await page.mouse.click(box!.x + at![0], box!.y + at![1]);
  await expect(page.getByTestId('inspector')).toHaveAttribute('data-request', id);
});

test('zoom buttons, wheel and f to fit move the picture, and fit brings it back', async ({ page }) => {
  await live(page);
  const center = () => page.evaluate(() => (window as any).__liveview.nodeCenter('database'));
  const fitted = await center();
  await page.getByTestId('zoom-in').click();
  const zoomed = await center();
  expect(zoomed).not.toEqual(fitted);
  const canvas = page.getByTestId('flow-canvas');
  const box = await canvas.boundingBox();
  await page.mouse.move(box!.x + 40, box!.y + 40);
  await page.mouse.wheel(0, -300);
  await expect.poll(center).not.toEqual(zoomed);
  await canvas.click({ position: { x: 5, y: 5 } });
  await page.keyboard.press('f');
  await expect.poll(center).toEqual(fitted);
});

test('on a tablet the page fits its width and the canvas stays usable', async ({ page }) => {
  await page.setViewportSize({ width: 800, height: 1000 });
  await live(page);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow, 'no horizontal scrolling').toBeLessThanOrEqual(0);
  const canvas = await page.getByTestId('flow-canvas').boundingBox();
  expect(canvas!.width).toBeGreaterThan(700);
  // The side panel goes below the canvas rather than beside it.
  const list = await page.getByTestId('request-list').boundingBox();
  expect(list!.y).toBeGreaterThan(canvas!.y + canvas!.height);
  await clickNode(page, 'queue:mail');
  await expect(page.getByTestId('card-queue:mail')).toBeVisible();
});

test('changing the speed changes the animation speed', async ({ page }) => {
  await live(page);
  // How far the animation clock moves in a second of real time (a measuring window).
  const rate = async () => {
    const before = await page.evaluate(() => (window as any).__liveview.clock());
    await page.waitForTimeout(1000);
    const after = await page.evaluate(() => (window as any).__liveview.clock());
    return after - before;
  };
  const speed = page.getByTestId('speed');
  await speed.fill('0.25');
  await expect(page.getByTestId('speed-badge')).toHaveText('0.25×');
  const slow = await rate();
  await speed.fill('5');
  await expect(page.getByTestId('speed-badge')).toHaveText('5×');
  const fast = await rate();
  // 20× in theory; frames are not exact, so ask for a clear difference only.
  expect(fast / slow).toBeGreaterThan(8);
  await page.getByTestId('flow-canvas').click({ position: { x: 5, y: 5 } });
  await page.keyboard.press('-');
  await expect(page.getByTestId('speed-badge')).toHaveText('3×');
  await page.keyboard.press(' ');
  await expect(page.getByTestId('paused')).toBeVisible();
  const paused = await rate();
  expect(paused).toBe(0);
});

test('an injected delay shows in the stage durations', async ({ page, request }) => {
  await live(page);
  await page.getByTestId('delay-databaseOperation').fill('300');
  await expect
    .poll(async () => (await (await request.get('/api/live-view/controls')).json()).delays.databaseOperation)
    .toBe(300);
  const [id] = await simulate(request, 'purchase');
  await page.getByTestId('find-request').fill(id);
  await page.getByTestId('find-request').press('Enter');
  const database = page.locator('[data-testid="stage"][data-stage="db-query"] [data-testid="stage-duration"]');
  await expect(database).toHaveText(/ms$/, { timeout: 15_000 });
  const ms = parseFloat((await database.textContent())!);
  expect(ms).toBeGreaterThanOrEqual(300);
});

test('step mode advances exactly one stage per click', async ({ page, request }) => {
  await live(page);
  await page.getByTestId('start-stepped').click();
  await expect(page.getByTestId('stepping')).toContainText('stepping');
  const stages = page.getByTestId('stage');
  await expect(stages).not.toHaveCount(0);
  // Held at a step: the inspector lists every stage the server has for it so far.
  const id = (await page.getByTestId('inspector').getAttribute('data-request'))!;
  await expect
    .poll(async () => (await stages.count()) === (await journey(request, id))?.stages.length, {
      message: `the inspector has all of ${id}'s stages`,
    })
    .toBe(true);
  let count = await stages.count();
  for (let click = 0; click < 4; click++) {
    await page.getByTestId('step').click();
    await expect(stages).toHaveCount(count + 1);
    // And no further while nobody clicks.
    await page.waitForTimeout(700);
    await expect(stages).toHaveCount(count + 1);
    count += 1;
  }
  // The → key steps too.
  await page.getByTestId('flow-canvas').click({ position: { x: 5, y: 5 } });
  await page.keyboard.press('ArrowRight');
  await expect(stages).toHaveCount(count + 1);
});

test('requeue from the dead-letter queue moves the jobs and they flow again', async ({ page, request }) => {
  await live(page);
  await request.put('/api/faults', { data: { smtp4xxRate: 0, smtp5xxRate: 1, smtpLatencyMs: 0 } });
  const [id] = await simulate(request, 'signup');
  await expect
    .poll(async () => (await journey(request, id))?.stages.some((s: { stage: string }) => s.stage === 'dead-letter'), { timeout: 20_000 })
    .toBe(true);
  await request.put('/api/faults', { data: { smtp4xxRate: 0, smtp5xxRate: 0, smtpLatencyMs: 0 } });
  await clickNode(page, 'queue:mail-dlq');
  const card = page.getByTestId('card-queue:mail-dlq');
  await expect(card).toBeVisible();
  await expect(page.getByTestId('dlq-count')).not.toHaveText('0 matching');
  await expect(card).toContainText(id);
  page.once('dialog', (dialog) => dialog.accept());
  await page.getByTestId('requeue-all').click();
  await expect(page.getByTestId('notice')).toContainText('Requeued');
  await expect(page.getByTestId('dlq-count')).toHaveText('0 matching');
  // The requeue is in the audit log, with who took it and what it got.
  await expect(page.getByTestId('audit-entry').first()).toContainText('anonymous POST /api/queues/mail-dlq/requeue → 200');
  // The job runs again: a new pickup and a delivered email after the dead-letter stage.
  await expect
    .poll(async () => {
      const stages: { stage: string; metadata?: { smtpCode?: number } }[] = (await journey(request, id)).stages;
      const dead = stages.findIndex((s) => s.stage === 'dead-letter');
      return stages.slice(dead + 1).some((s) => s.stage === 'smtp-attempt' && s.metadata?.smtpCode === 250);
    }, { timeout: 20_000 })
    .toBe(true);
});

test('replay plays a past window with its own timestamps', async ({ page, request }) => {
  await live(page);
  const since = Date.now();
  await inHistory(request, await simulate(request, 'purchase', 3), since);
  await page.getByTestId('replay-window').selectOption('1');
  const loadedAt = Date.now();
  await page.getByTestId('replay-load').click();
  await expect(page.getByTestId('replay-badge')).toBeVisible();
  // The indicator still tells the live connection's state underneath.
  await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
  const replay = page.getByTestId('replay');
  await expect(replay).toContainText('stage events');
  const time = page.getByTestId('replay-time');
  const first = await time.textContent();
  await expect(time).not.toHaveText(first!);
  expect(first).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC$/);
  // Its own timestamps: the clock tells the window's time as it was, starting a minute
  // before the load, not the time now.
  const shown = Date.parse(first!.replace(' ', 'T').replace(' UTC', 'Z'));
  expect(shown, `${first} in the window`).toBeGreaterThanOrEqual(loadedAt - 61_000);
  expect(shown, `${first} in the window`).toBeLessThan(loadedAt - 30_000);
  // Jump to just before the requests (the window ends when it was loaded): the bubbles
  // that were in flight then are back on the canvas.
  const scrubber = page.getByTestId('replay-scrubber');
  const end = Number(await scrubber.getAttribute('max'));
  await scrubber.fill(String(Math.max(0, end - 3500)));
  await expect.poll(() => page.evaluate(() => (window as any).__liveview.bubbles())).toBeGreaterThan(0);
  await page.getByTestId('replay-toggle').click();
  await expect(replay).toHaveAttribute('data-playing', 'false');
  const paused = await time.textContent();
  // A fixed wait, for nothing to happen: the paused clock stands still.
  await page.waitForTimeout(600);
  await expect(time).toHaveText(paused!);
  await page.getByTestId('replay-rewind').click();
  await expect.poll(() => page.evaluate(() => (window as any).__liveview.bubbles())).toBe(0);
  await page.getByTestId('replay-exit').click();
  await expect(page.getByTestId('replay-badge')).toHaveCount(0);
  await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
});

test('replay plays a window chosen by its start and end', async ({ page, request }) => {
  await live(page);
  const since = Date.now();
  await inHistory(request, await simulate(request, 'purchase', 3), since);
  const minute = (at: Date) => at.toISOString().slice(0, 16); // datetime-local, read as UTC
  const start = new Date(Date.now() - 2 * 60_000);
  const end = new Date(Date.now() + 60_000);
  await page.getByTestId('replay-from').fill(minute(start));
  await page.getByTestId('replay-to').fill(minute(end));
  await page.getByTestId('replay-load').click();
  await expect(page.getByTestId('replay')).toContainText('stage events');
  // The clock starts at the chosen minute, shown as it really was.
  await expect(page.getByTestId('replay-time')).toContainText(minute(start).replace('T', ' '));
  const summary = await page.getByTestId('replay').textContent();
  expect(Number(summary!.match(/(\d+) stage events/)![1])).toBeGreaterThan(0);
  await page.getByTestId('replay-exit').click();
});

test('the JSON export downloads a valid journey', async ({ page, request }) => {
  await live(page);
  const [id] = await simulate(request, 'login');
  await page.goto(`/#request=${id}`);
  await expect(page.getByTestId('inspector')).toHaveAttribute('data-request', id);
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-json').click()]);
  expect(download.suggestedFilename()).toBe(`request-${id}.json`);
  const exported = JSON.parse(readFileSync((await download.path())!, 'utf8'));
  expect(exported.request.requestId).toBe(id);
  expect(exported.request.stages[0].stage).toBe('lb-received');
  const [csv] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-csv').click()]);
  const lines = readFileSync((await csv.path())!, 'utf8').trim().split('\n');
  expect(lines[0]).toContain('requestId,type,stage');
  expect(lines.length).toBeGreaterThan(1);
});

test('when WebSockets are refused the page falls back to server-sent events', async ({ page, request }) => {
  await page.routeWebSocket(/\/api\/live-view\/ws/, (socket) => socket.close());
  await page.goto('/');
  const indicator = page.getByTestId('connection');
  await expect(indicator).toHaveAttribute('data-transport', 'sse', { timeout: 20_000 });
  await expect(indicator).toHaveAttribute('data-state', 'live');
  await expect(page.getByTestId('connection-text')).toContainText('server-sent events');
  const [id] = await simulate(request, 'purchase');
  await expect(page.getByTestId(`request-${id}`)).toBeVisible();
});
