// The end users' client on the balancer's `/`: an account made in the browser, the
// notification center live in two tabs (one reads, the other's badge follows), grouping,
// toasts, archive, preferences honoured by the pipeline, friends, sign-out, and a
// password reset from the emailed link. Screenshots at desktop and phone widths.
import { test, expect, APIRequestContext, Page } from '@playwright/test';

/** The balancer's URL, as the dashboard's /status names it. */
async function balancer(request: APIRequestContext): Promise<string> {
  const status = await (await request.get('/status', { headers: { Accept: 'application/json' } })).json();
  const lb = status.components.find((component: { id: string }) => component.id === 'load-balancer');
  return `http://${lb.address}`;
}

/** A user made through the API, signed in: their token. */
async function apiUser(request: APIRequestContext, lb: string, email: string, name: string): Promise<string> {
  const password = 'a long enough password';
  expect((await request.post(`${lb}/api/auth/signup`, { data: { email, name, password } })).status()).toBe(201);
  const session = await (await request.post(`${lb}/api/auth/login`, { data: { email, password } })).json();
  return session.token;
}

async function befriend(request: APIRequestContext, lb: string, token: string, toEmail: string) {
  const sent = await request.post(`${lb}/api/friend-requests`, {
    data: { toEmail },
    headers: { Authorization: `Bearer ${token}` },
  });
  expect(sent.status()).toBe(201);
}

async function signUp(page: Page, lb: string, name: string, email: string, password: string) {
  await page.goto(`${lb}/`);
  await page.getByTestId('tab-sign-up').click();
  const form = page.getByTestId('sign-up-form');
  await form.getByTestId('name').fill(name);
  await form.getByTestId('email').fill(email);
  await form.getByTestId('password').fill(password);
  await form.getByTestId('submit').click();
  await expect(page.getByTestId('who')).toHaveText(name);
}

const badge = (page: Page) => page.getByTestId('unread-count');

test('the notification center stays in agreement across two tabs, live', async ({ page, context, request }) => {
  const lb = await balancer(request);
  const stamp = Date.now();
  const ada = `ada-${stamp}@example.com`;
  await signUp(page, lb, 'Ada', ada, 'ada has a long password');
  await expect(page.getByTestId('client-connection')).toHaveAttribute('data-state', 'live');
  // The welcome and the new sign-in, both unread.
  await expect(page.getByTestId('notification')).toHaveCount(2);
  await expect(badge(page)).toHaveText('2');

  // A second tab of the same browser is signed in by the kept token.
  const other = await context.newPage();
  await other.goto(`${lb}/`);
  await expect(other.getByTestId('who')).toHaveText('Ada');
  await expect(badge(other)).toHaveText('2');

  // Reading on one tab clears it on the other.
  await page.getByTestId('notification').first().getByTestId('mark-read').click();
  await expect(badge(page)).toHaveText('1');
  await expect(badge(other)).toHaveText('1');
  await expect(other.getByTestId('notification').first()).toHaveAttribute('data-state', 'read');

  // Three friends ask: toasts while the page is open, one group, the badge on both tabs.
  const askers = [];
  for (const name of ['Bob', 'Cy', 'Dee']) {
    const token = await apiUser(request, lb, `${name.toLowerCase()}-${stamp}@example.com`, name);
    await befriend(request, lb, token, ada);
    askers.push(token);
  }
  await expect(page.getByTestId('toast').first()).toContainText('friend request');
  await expect(badge(page)).toHaveText('4');
  await expect(badge(other)).toHaveText('4');
  await expect(page.getByTestId('group-title')).toHaveText('3 new friend requests');
  await page.getByTestId('group-toggle').click();
  await expect(page.getByTestId('group').getByTestId('notification')).toHaveCount(3);

  // Categories narrow the list.
  await page.getByTestId('category-account').click();
  await expect(page.getByTestId('notification')).toHaveCount(2);
  await page.getByTestId('category-all').click();

  await page.setViewportSize({ width: 1100, height: 760 });
  await page.screenshot({ path: '../docs/client.png' });

  // Mark all read: nothing unread anywhere.
  await page.getByTestId('read-all').click();
  await expect(badge(page)).toBeHidden();
  await expect(badge(other)).toBeHidden();
  await expect(page.getByTestId('group')).toHaveCount(0);

  // Archive one: it leaves the inbox on both tabs and is in the archive.
  await expect(other.getByTestId('notification')).toHaveCount(5);
  await page.getByTestId('notification').first().getByTestId('archive').click();
  await expect(page.getByTestId('notification')).toHaveCount(4);
  await expect(other.getByTestId('notification')).toHaveCount(4);
  await page.getByTestId('view-archived').click();
  await expect(page.getByTestId('notification')).toHaveCount(1);
  await page.getByTestId('notification').getByTestId('unarchive').click();
  await expect(page.getByTestId('notification')).toHaveCount(0);
  await page.getByTestId('view-inbox').click();
  await expect(page.getByTestId('notification')).toHaveCount(5);

  // Snooze one for an hour: out of the inbox on both tabs, in the snoozed view.
  await page.getByTestId('notification').first().getByTestId('snooze').selectOption('60');
  await expect(page.getByTestId('notification')).toHaveCount(4);
  await expect(other.getByTestId('notification')).toHaveCount(4);
  await page.getByTestId('view-snoozed').click();
  await expect(page.getByTestId('notification')).toHaveCount(1);
  await expect(page.getByTestId('notification')).toContainText('back ');
  await page.getByTestId('view-inbox').click();
  await expect(page.getByTestId('notification')).toHaveCount(4);

  // Friends: accept Bob.
  await page.getByTestId('panel-friends').click();
  await expect(page.getByTestId('incoming-request')).toHaveCount(3);
  await page.getByTestId('incoming-request').filter({ hasText: 'Bob' }).getByTestId('accept').click();
  await expect(page.getByTestId('friend')).toHaveCount(1);
  await expect(page.getByTestId('friend')).toContainText('Bob');
  await expect(page.getByTestId('incoming-request')).toHaveCount(2);

  // Social switched off in the app: a new request is stored but never shown or counted.
  await page.getByTestId('panel-preferences').click();
  await page.getByTestId('pref-social-in-app').uncheck();
  await expect(page.getByTestId('preferences-said')).toHaveText('Saved.');
  await page.reload();
  await page.getByTestId('panel-preferences').click();
  await expect(page.getByTestId('pref-social-in-app')).not.toBeChecked();
  await expect(page.getByTestId('pref-social-email')).toBeChecked();
  const eve = await apiUser(request, lb, `eve-${stamp}@example.com`, 'Eve');
  await befriend(request, lb, eve, ada);
  // The skipped delivery reaches its end; then the list still has no new one.
  const token = await page.evaluate(() => localStorage.getItem('liveview-session'));
  await expect
    .poll(async () => {
      const list = await (await request.get(`${lb}/api/notifications?view=all&category=social`, {
        headers: { Authorization: `Bearer ${token}` },
      })).json();
      return list.notifications.length;
    })
    .toBe(0);
  await page.getByTestId('panel-notifications').click();
  await expect(page.getByTestId('notification')).toHaveCount(2);
  await expect(badge(page)).toBeHidden();
  await expect(page.getByTestId('toast')).toHaveCount(0);

  // A phone's width: the rows stack, nothing overflows sideways.
  await page.getByTestId('panel-preferences').click();
  await page.getByTestId('pref-social-in-app').check();
  await expect(page.getByTestId('preferences-said')).toHaveText('Saved.');
  await page.getByTestId('panel-notifications').click();
  await page.setViewportSize({ width: 390, height: 800 });
  await expect(page.getByTestId('notification').first()).toBeVisible();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  await page.screenshot({ path: '../docs/client-mobile.png' });

  // Signing out ends the session: the other tab's next call finds it gone.
  await page.getByTestId('sign-out').click();
  await expect(page.getByTestId('sign-in-form')).toBeVisible();
  const after = await request.get(`${lb}/api/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
  expect(after.status()).toBe(401);
  await other.reload();
  await expect(other.getByTestId('sign-in-form')).toBeVisible();
});

test('a wrong password is refused and a reset link sets a new one', async ({ page, request }) => {
  const lb = await balancer(request);
  const email = `rita-${Date.now()}@example.com`;
  await apiUser(request, lb, email, 'Rita');

  await page.goto(`${lb}/`);
  const form = page.getByTestId('sign-in-form');
  await form.getByTestId('email').fill(email);
  await form.getByTestId('password').fill('not her password');
  await form.getByTestId('submit').click();
  await expect(page.getByTestId('account-error')).toHaveText('Wrong email or password.');

  await page.getByTestId('tab-forgot').click();
  await page.getByTestId('forgot-form').getByTestId('email').fill(email);
  await page.getByTestId('forgot-form').getByTestId('submit').click();
  await expect(page.getByTestId('account-said')).toContainText('reset email');

  // The link from the real email the capture server took.
  let link = '';
  await expect
    .poll(async () => {
      const mailbox = await (await request.get('/api/mailbox?limit=200')).json();
      const mail = mailbox.messages.find(
        (message: { rcptTo: string; subject?: string }) =>
          message.rcptTo.includes(email) && (message.subject ?? '').includes('Reset'),
      );
      const raw: string = (mail?.raw ?? '').replace(/=\r?\n/g, '');
      link = raw.match(/https?:\/\/\S+\/reset-password\?token=3D([0-9a-zA-Z_-]+)|https?:\/\/\S+\/reset-password\?token=([0-9a-zA-Z_-]+)/)?.slice(1).find(Boolean) ?? '';
      return link.length > 0;
    })
    .toBe(true);
  await page.goto(`${lb}/reset-password?token=${link}`);
  await page.getByTestId('reset-form').getByTestId('password').fill('rita has a new password');
  await page.getByTestId('reset-form').getByTestId('submit').click();
  await expect(page.getByTestId('account-said')).toContainText('password changed');

  await page.goto(`${lb}/`);
  await form.getByTestId('email').fill(email);
  await form.getByTestId('password').fill('rita has a new password');
  await form.getByTestId('submit').click();
  await expect(page.getByTestId('who')).toHaveText('Rita');
  await expect(page.getByText('Password changed')).toBeVisible();
});

test('an operator announces from the dashboard and the client shows it until dismissed', async ({ page, browser, request }) => {
  const lb = await balancer(request);
  const email = `ann-${Date.now()}@example.com`;
  const client = await (await browser.newContext()).newPage();
  await signUp(client, lb, 'Ann', email, 'ann has a long password');
  await expect(client.getByTestId('client-connection')).toHaveAttribute('data-state', 'live');

  await page.goto('/');
  const form = page.getByTestId('announce');
  await form.getByTestId('announce-title').fill('Maintenance tonight');
  await form.getByTestId('announce-body').fill('From 22:00 UTC, for ten minutes.');
  await form.getByTestId('announce-send').click();
  await expect(page.getByTestId('audit-entry').filter({ hasText: '/api/announcements' }).first()).toBeVisible();

  const banner = client.getByTestId('announcement');
  await expect(banner).toContainText('Maintenance tonight');
  await expect(banner).toContainText('From 22:00 UTC');
  await client.screenshot({ path: '../docs/client-announcement.png' });
  await client.getByTestId('dismiss-announcement').click();
  await expect(banner).toHaveCount(0);
  await client.reload();
  await expect(client.getByTestId('who')).toHaveText('Ann');
  await expect(client.getByTestId('notification').first()).toBeVisible();
  await expect(banner).toHaveCount(0);
  await client.context().close();
});
