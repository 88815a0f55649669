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
// does not claim; `admin@example.com` is the tests' platform admin.
const accounts = {
  'alice@acme.example': { email: 'alice@acme.example', email_verified: true },
  'newcomer@acme.example': { email: 'newcomer@acme.example', email_verified: true },
  'unverified@acme.example': { email: 'unverified@acme.example', email_verified: false },
  'other@elsewhere.example': { email: 'other@elsewhere.example', email_verified: true },
  // What a rogue org admin's provider asserts: the platform admin's own address.
  'admin@example.com': { email: 'admin@example.com', email_verified: true },
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
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  // Put the email claims in the ID token itself (coreauth also reads userinfo).
  conformIdTokenClaims: false,
  jwks: { keys: [jwk] },
  cookies: { keys: ['coreauth-test-cookie-key'] },
  async findAccount(_ctx, id) {
    const claims = accounts[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
};

const provider = new Provider(issuer, configuration);
provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
