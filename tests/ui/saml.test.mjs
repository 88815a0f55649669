// SAML sign-in in a real browser (Debian's headless Chromium): coreauth's start redirects to a
// real IdP (npm saml-idp), the person fills in and submits its form, the IdP's page posts the
// response back across sites, and the browser lands signed in.
//
// The IdP is reached as `localhost` and coreauth as `127.0.0.1`: two sites, as in production,
// so the browser leaves coreauth's SameSite=Lax binding cookie off the IdP's cross-site POST
// and coreauth's own re-post of the form is what carries it.
//
// Environment: BASE_URL, ADMIN_EMAIL, ADMIN_PASSWORD, SAML_IDP_URL (set by scripts/ui-test),
// CHROMIUM (default /usr/bin/chromium).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium } from './chromium.mjs';

const base = process.env.BASE_URL;
const idp = process.env.SAML_IDP_URL;
let browser;

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
});

async function api(method, path, token, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

test('a person signs in through the IdP and lands signed in, with the cookie carried over', async () => {
  const { token } = await api('POST', '/user/authenticate', null, {
    email: process.env.ADMIN_EMAIL,
    password: process.env.ADMIN_PASSWORD,
  });
  const org = await api('POST', '/admin/orgs', token, { name: `Acme ${Date.now()}` });
  const connection = await api('POST', `/admin/orgs/${org.id}/sso/connections`, token, {
    name: 'adfs',
    emailDomains: ['acme.example'],
    allowJit: true,
    claims: { roleMapping: { admins: 'admin' } },
    saml: { metadataUrl: `${idp}/metadata` },
  });
  assert.equal(connection.protocol, 'saml');
  assert.ok(connection.saml.ssoUrl.startsWith('http://localhost:'), connection.saml.ssoUrl);
  const settings = await fetch(`${idp}/settings`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ audience: connection.saml.spEntityId }),
  });
  assert.ok(settings.ok);

  const page = await browser.newPage();
  const violations = [];
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  const acsPosts = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && request.url().endsWith('/user/authenticate/saml/acs')) {
      // Cookies are added below the page: only allHeaders() shows them.
      acsPosts.push(request.allHeaders().then((headers) => headers.cookie ?? ''));
    }
  });
  await page.goto(`${base}/user/authenticate/sso/start?org=${org.id}&client=browser-test`);
  assert.ok(page.url().startsWith(`${idp}/saml/sso?SAMLRequest=`), page.url());
  await page.fill('#userName', 'alice@acme.example');
  await page.fill('#email', 'alice@acme.example');
  await page.fill('#firstName', 'Alice');
  await page.fill('#lastName', 'Liddell');
  // The groups field is a tags widget over a hidden input: set what the widget would.
  await page.evaluate(() => {
    document.getElementById('groups').value = 'admins,staff';
  });
  await page.click('#btn-sign-in');
  await page.waitForFunction(() => document.body?.innerText.includes('"token"'), null, { timeout: 20000 });
  const session = JSON.parse(await page.innerText('body'));
  assert.equal(session.user.email, 'alice@acme.example');
  assert.equal(session.user.role, 'admin');
  const cookies = await Promise.all(acsPosts);
  assert.equal(cookies.length, 2, 'the IdP posted once, and coreauth posted the form again');
  assert.ok(!cookies[0].includes('coreauth_sso_'), 'no binding cookie on the cross-site POST');
  assert.ok(cookies[1].includes('coreauth_sso_'), 'the binding cookie on coreauth\'s own POST');
  assert.deepEqual(violations, [], 'the re-post page works under its CSP');
  const me = await fetch(`${base}/user/me`, { headers: { authorization: `Bearer ${session.token}` } });
  assert.equal(me.status, 200);
  await page.close();
});
