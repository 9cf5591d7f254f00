// With --dashboard-auth login: the sign-in page, a wrong password, an operator who may
// act, a viewer whose controls are disabled and whose control requests are refused, and
// signing out.
import { test, expect, Page } from '@playwright/test';
import { ChildProcess } from 'node:child_process';
import { addOperator, freshDataDir, startLiveview, stopLiveview } from './support';

const PORT = Number(process.env.E2E_SIGN_IN_PORT ?? 3903);
const BASE = `http://127.0.0.1:${PORT}`;
let server: ChildProcess;

test.beforeAll(async () => {
  const dataDir = freshDataDir();
  addOperator(dataDir, 'olga', 'operator', 'olga has a long password');
  addOperator(dataDir, 'vic', 'viewer', 'vic has a long password');
  server = await startLiveview(PORT, dataDir, ['--dashboard-auth', 'login']);
});

test.afterAll(async () => {
  await stopLiveview(server);
});

async function signIn(page: Page, name: string, password: string) {
  await page.getByTestId('sign-in-name').fill(name);
  await page.getByTestId('sign-in-password').fill(password);
  await page.getByTestId('sign-in-submit').click();
}

test('an operator signs in, acts, is named in the audit log, and signs out', async ({ page }) => {
  await page.goto(`${BASE}/`);
  await expect(page.getByTestId('sign-in')).toBeVisible();
  await expect(page.getByTestId('connection')).toHaveCount(0);

  await signIn(page, 'olga', 'not her password');
  await expect(page.getByTestId('sign-in-error')).toHaveText('Wrong name or password.');
  await expect(page.getByTestId('sign-in-password')).toHaveValue('');

  await signIn(page, 'olga', 'olga has a long password');
  await expect(page.getByTestId('who-name')).toHaveText('olga');
  await expect(page.getByTestId('who-role')).toHaveText('operator');
  await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
  // The session cookie is HttpOnly: the page's script cannot read it.
  expect(await page.evaluate(() => document.cookie)).not.toContain('liveview_session');

  await expect(page.getByTestId('start-stepped')).toBeEnabled();
  await page.getByTestId('node-queue:mail').click();
  await page.getByTestId('queue-pause').click();
  await expect(page.getByTestId('queue-resume')).toBeVisible();
  await expect(page.getByTestId('audit-entry').first()).toContainText('olga POST /api/queues/mail/pause → 200');
  await page.getByTestId('queue-resume').click();
  await expect(page.getByTestId('queue-pause')).toBeVisible();

  // A reload keeps the session.
  await page.reload();
  await expect(page.getByTestId('who-name')).toHaveText('olga');

  await page.getByTestId('sign-out').click();
  await expect(page.getByTestId('sign-in')).toBeVisible();
  const after = await page.request.get(`${BASE}/api/servers`);
  expect(after.status()).toBe(401);
  // The status page sends a browser without a session to the sign-in page.
  await page.goto(`${BASE}/status`);
  await expect(page).toHaveURL(`${BASE}/`);
  await expect(page.getByTestId('sign-in')).toBeVisible();
});

test('a viewer watches, but every control is disabled and refused', async ({ page }) => {
  await page.goto(`${BASE}/`);
  await signIn(page, 'vic', 'vic has a long password');
  await expect(page.getByTestId('who-role')).toHaveText('viewer');
  await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
  await expect(page.getByTestId('start-stepped')).toBeDisabled();
  await expect(page.getByTestId('delay-databaseOperation')).toBeDisabled();
  await expect(page.getByTestId('simulate')).toBeDisabled();
  await page.getByTestId('node-queue:mail').click();
  await expect(page.getByTestId('queue-pause')).toBeDisabled();
  // The status page is open to a viewer.
  const status = await page.request.get(`${BASE}/status`);
  expect(status.status()).toBe(200);
  // The server refuses what the page disabled, with the viewer's own cookie.
  const pause = await page.request.post(`${BASE}/api/queues/mail/pause`);
  expect(pause.status()).toBe(403);
  expect(await pause.json()).toEqual({ error: 'this needs the operator role; vic is a viewer' });
  const queues = await (await page.request.get(`${BASE}/api/queues`)).json();
  expect(queues.queues.find((queue: { name: string }) => queue.name === 'mail').paused).toBe(false);
});
