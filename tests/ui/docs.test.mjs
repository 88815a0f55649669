// The API documentation in a real browser (Debian's headless Chromium through playwright-core):
// an administrator signs in with the form at /docs and Swagger UI renders every operation under
// the page's strict Content-Security-Policy; a member is turned away.
//
// Environment: BASE_URL, ADMIN_EMAIL, ADMIN_PASSWORD, MEMBER_EMAIL, MEMBER_PASSWORD
// (set by scripts/ui-test), CHROMIUM (default /usr/bin/chromium). Playwright gives the browser a
// fresh, empty profile of its own.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium } from './chromium.mjs';

const base = process.env.BASE_URL;
let browser;

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
});

async function signIn(page, email, password) {
  await page.goto(`${base}/docs`);
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
}

test('an administrator signs in and sees every operation in Swagger UI', async () => {
  const page = await browser.newPage();
  const violations = [];
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  await signIn(page, process.env.ADMIN_EMAIL, process.env.ADMIN_PASSWORD);
  await page.waitForURL(/\/docs\/ui\//);
  await page.waitForSelector('.opblock', { timeout: 20000 });
  const operations = await page.locator('.opblock').count();
  assert.ok(operations >= 40, `only ${operations} operations rendered`);
  const login = page.locator('.opblock-post', { hasText: '/user/authenticate' }).first();
  assert.ok(await login.isVisible(), 'POST /user/authenticate is listed');
  assert.deepEqual(violations, [], 'the page works under its CSP');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'coreauth_docs');
  assert.ok(session?.httpOnly && session.sameSite === 'Strict', 'an HttpOnly, SameSite cookie');
  await page.close();
});

test('a member is turned away and sees no documentation', async () => {
  const page = await browser.newPage();
  await signIn(page, process.env.MEMBER_EMAIL, process.env.MEMBER_PASSWORD);
  await page.waitForSelector('[role=alert]');
  assert.match(await page.textContent('[role=alert]'), /administrators only/);
  const response = await page.goto(`${base}/docs/ui/`);
  assert.ok(!page.url().includes('/docs/ui/'), 'sent back to the sign-in form');
  assert.equal(response.status(), 200);
  assert.equal(await page.locator('.opblock').count(), 0);
  await page.close();
});
