// Messaging in the end users' client, two people in two browser contexts: a
// conversation started from the friends list, typing shown and ended, a message going
// sending → delivered → read as the other reads it, and messages composed offline kept,
// sent in order when the network is back, and never shown twice.
import { test, expect, APIRequestContext, Browser, Page } from '@playwright/test';

async function balancer(request: APIRequestContext): Promise<string> {
  const status = await (await request.get('/status', { headers: { Accept: 'application/json' } })).json();
  return `http://${status.components.find((component: { id: string }) => component.id === 'load-balancer').address}`;
}

/** A user signed up through the API and signed in in a fresh browser context. */
async function signedIn(browser: Browser, request: APIRequestContext, lb: string, name: string, email: string) {
  const password = 'a long enough password';
  expect((await request.post(`${lb}/api/auth/signup`, { data: { email, name, password } })).status()).toBe(201);
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${lb}/`);
  const form = page.getByTestId('sign-in-form');
  await form.getByTestId('email').fill(email);
  await form.getByTestId('password').fill(password);
  await form.getByTestId('submit').click();
  await expect(page.getByTestId('who')).toHaveText(name);
  await expect(page.getByTestId('client-connection')).toHaveAttribute('data-state', 'live');
  const token = (await page.evaluate(() => localStorage.getItem('liveview-session'))) ?? '';
  return { context, page, token };
}

const mine = (page: Page) => page.locator('[data-testid="message"].mine');
/** What each message says, without its state. */
const texts = (page: Page) => page.locator('[data-testid="message"] .text');

test('two friends talk: typing, delivered and read, and an offline outbox', async ({ browser, request }) => {
  const lb = await balancer(request);
  const stamp = Date.now();
  const ada = await signedIn(browser, request, lb, 'Ada', `ada-chat-${stamp}@example.com`);
  const bob = await signedIn(browser, request, lb, 'Bob', `bob-chat-${stamp}@example.com`);
  const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
  const asked = await (await request.post(`${lb}/api/friend-requests`, {
    data: { toEmail: `bob-chat-${stamp}@example.com` },
    headers: auth(ada.token),
  })).json();
  expect((await request.post(`${lb}/api/friend-requests/${asked.id}/accept`, { headers: auth(bob.token) })).status()).toBe(200);

  // Ada starts the conversation from her friends list.
  await ada.page.getByTestId('panel-friends').click();
  await ada.page.getByTestId('friend').filter({ hasText: 'Bob' }).getByTestId('message-friend').click();
  await expect(ada.page.getByTestId('thread-title')).toHaveText('Bob');

  // Bob has it in his list (the created frame) and opens it.
  await bob.page.getByTestId('panel-messages').click();
  await expect(bob.page.getByTestId('conversation')).toHaveCount(1);
  await bob.page.getByTestId('conversation').click();
  await expect(bob.page.getByTestId('thread-title')).toHaveText('Ada');

  // Typing shows on Bob's side and ends when the message is sent.
  await ada.page.getByTestId('composer').pressSequentially('hello Bob', { delay: 30 });
  await expect(bob.page.getByTestId('typing')).toHaveText('Ada is typing…');
  await ada.page.getByTestId('send').click();
  await expect(texts(bob.page)).toHaveText(['hello Bob']);
  await expect(bob.page.getByTestId('typing')).toHaveText('');
  // Bob's thread is open and on screen: delivered, then read, on Ada's side.
  await expect(mine(ada.page)).toHaveAttribute('data-state', 'read');
  await expect(mine(ada.page).getByTestId('message-state')).toHaveText('Read');

  // Bob answers; Ada sees it.
  await bob.page.getByTestId('composer').fill('hi Ada');
  await bob.page.getByTestId('composer').press('Enter');
  await expect(ada.page.locator('[data-testid="message"]:not(.mine) .text')).toHaveText(['hi Ada']);

  await ada.page.setViewportSize({ width: 1100, height: 700 });
  await ada.page.screenshot({ path: '../docs/client-messages.png' });

  // Offline: two messages show as sending and wait in the browser's storage.
  await ada.context.setOffline(true);
  for (const text of ['offline one', 'offline two']) {
    await ada.page.getByTestId('composer').fill(text);
    await ada.page.getByTestId('send').click();
  }
  await expect(ada.page.locator('[data-testid="message"][data-state="sending"]')).toHaveCount(2);
  const kept = await ada.page.evaluate(() => JSON.parse(localStorage.getItem('offline_message_queue') ?? '{}'));
  expect(kept.items.map((item: { body: string }) => item.body)).toEqual(['offline one', 'offline two']);
  await expect(bob.page.getByTestId('message')).toHaveCount(2);

  // Back online: sent in order, each once, and read by Bob.
  await ada.context.setOffline(false);
  await expect(texts(bob.page)).toHaveText(['hello Bob', 'hi Ada', 'offline one', 'offline two'], { timeout: 30_000 });
  await expect(mine(ada.page)).toHaveCount(3);
  await expect(mine(ada.page).last()).toHaveAttribute('data-state', 'read');
  const seqs = await bob.page.getByTestId('message').evaluateAll((items) => items.map((item) => Number(item.getAttribute('data-seq'))));
  expect(seqs).toEqual([1, 2, 3, 4]);
  const left = await ada.page.evaluate(() => JSON.parse(localStorage.getItem('offline_message_queue') ?? '{}'));
  expect(left.items).toEqual([]);
  const stored = await (await request.get(`${lb}/api/conversations`, { headers: auth(bob.token) })).json();
  expect(stored.conversations[0].lastSeq).toBe(4);

  // A phone's width: the thread alone, with a way back to the list.
  await bob.page.setViewportSize({ width: 390, height: 800 });
  await expect(bob.page.getByTestId('back')).toBeVisible();
  await bob.page.screenshot({ path: '../docs/client-messages-mobile.png' });
  await bob.page.getByTestId('back').click();
  await expect(bob.page.getByTestId('conversation')).toBeVisible();

  await ada.context.close();
  await bob.context.close();
});
