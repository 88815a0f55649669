// A real OpenID provider for coreauth's SSO tests: oidc-provider on loopback, with one
// confidential client, PKCE required, dev interactions (any password), and a few accounts.
//
// Environment: PORT (required), CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, KEY_ID (the kid of a
// signing key generated at start, so a restart with another KEY_ID is a key rotation).
// Prints "ready <issuer>" on stdout once it listens.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;

// login → claims. `unverified@…` has an unverified email; `other@…` a domain coreauth's org
// does not claim; `admin@example.com` is the tests' platform admin. The `contoso` accounts send
// what Entra ID (v2) sends: no email_verified, often no email, `preferred_username`, `oid`,
// `tid`, `groups` (object ids); the `fabrikam` ones what ADFS sends: `upn`, `unique_name`,
// `group`, no email. `amr` (not a claim: how the sign-in was authenticated) is set by the
// login step below.
const accounts = {
  'alice@acme.example': { email: 'alice@acme.example', email_verified: true },
  'newcomer@acme.example': { email: 'newcomer@acme.example', email_verified: true },
  'unverified@acme.example': { email: 'unverified@acme.example', email_verified: false },
  'other@elsewhere.example': { email: 'other@elsewhere.example', email_verified: true },
  // What a rogue org admin's provider asserts: the platform admin's own address.
  'admin@example.com': { email: 'admin@example.com', email_verified: true },
  'erin@contoso.example': {
    preferred_username: 'erin@contoso.example',
    oid: '00000000-0000-0000-0000-00000000e001',
    tid: '11111111-2222-3333-4444-555555555555',
    groups: ['a1b2c3d4-0000-0000-0000-0000000000ad', 'a1b2c3d4-0000-0000-0000-000000000057'],
    given_name: 'Erin',
    family_name: 'Entra',
  },
  'sam@contoso.example': {
    preferred_username: 'sam@contoso.example',
    oid: '00000000-0000-0000-0000-00000000e002',
    tid: '11111111-2222-3333-4444-555555555555',
    groups: ['a1b2c3d4-0000-0000-0000-000000000057'],
  },
  'mfa@contoso.example': {
    preferred_username: 'mfa@contoso.example',
    oid: '00000000-0000-0000-0000-00000000e003',
    tid: '11111111-2222-3333-4444-555555555555',
    groups: ['a1b2c3d4-0000-0000-0000-000000000057'],
    amr: ['pwd', 'mfa'],
  },
  'guest@contoso.example': {
    preferred_username: 'guest@contoso.example',
    oid: '00000000-0000-0000-0000-00000000e004',
    tid: '11111111-2222-3333-4444-555555555555',
    groups: ['ffffffff-0000-0000-0000-000000000000'],
  },
  'FABRIKAM\\bob': {
    upn: 'bob@fabrikam.example',
    unique_name: 'FABRIKAM\\bob',
    group: ['Domain Users', 'Coreauth Admins'],
  },
  'FABRIKAM\\carol': {
    upn: 'FABRIKAM\\carol',
    unique_name: 'carol@fabrikam.example',
    group: 'Domain Users',
  },
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: process.env.KEY_ID || 'k1', use: 'sig', alg: 'RS256' };

const configuration = {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  claims: {
    // `amr` under `openid`: the ID token carries it whenever the sign-in recorded one.
    openid: ['sub', 'amr'],
    email: ['email', 'email_verified'],
    profile: ['given_name', 'family_name', 'preferred_username', 'oid', 'tid', 'upn',
      'unique_name', 'groups', 'group'],
  },
  // Put the email claims in the ID token itself (coreauth also reads userinfo).
  conformIdTokenClaims: false,
  jwks: { keys: [jwk] },
  cookies: { keys: ['coreauth-test-cookie-key'] },
  async findAccount(_ctx, id) {
    const claims = accounts[id];
    if (!claims) return undefined;
    const { amr: _amr, ...rest } = claims;
    return { accountId: id, async claims() { return { sub: id, ...rest }; } };
  },
};

const provider = new Provider(issuer, configuration);

// The dev login form records no `amr`. For accounts that have one, finish the login step here
// with it, as a provider that asked for a second factor would; others go on to the dev form.
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)) {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const raw = Buffer.concat(chunks).toString();
    const form = new URLSearchParams(raw);
    const account = accounts[form.get('login')];
    if (form.get('prompt') === 'login' && account?.amr) {
      await provider.interactionFinished(ctx.req, ctx.res, {
        login: { accountId: form.get('login'), amr: account.amr },
      }, { mergeWithLastSubmission: false });
      ctx.respond = false;
      return;
    }
    // Already read: the provider's parser takes it from here.
    ctx.request.body = raw;
  }
  await next();
});
provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
