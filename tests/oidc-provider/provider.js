// A real OpenID provider for the sign-in tests: panva's oidc-provider (the certified Node.js
// implementation), configured here with two clients and a non-interactive login.
//
// Started by the integration tests (`tests/api/oidc_support.rs`): it listens on a free loopback
// port, prints `{"issuer": "http://127.0.0.1:<port>"}` as its first stdout line, and exits when
// its stdin closes (the test process ended).
//
// Instead of the provider's HTML login and consent pages, an interaction is finished by
// `POST /interaction/<uid>/login` with a form body `login=<name>[&groups=a,b][&given_name=..]`:
// the account is created with those claims, and login and consent are granted in one step.
// `login` is the account's stable `sub`; `username` (default: the login) its
// `preferred_username`, which a person may change at the provider.
// `GET /interaction/<uid>` answers the pending interaction as JSON.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import Provider from 'oidc-provider';

// Redirect URIs of the service under test: the tests give it this PUBLIC_URL.
const PUBLIC_URL = process.env.AQ_TEST_PUBLIC_URL || 'http://aq.test';
// Audience of the JWT access tokens, the "resource server" this service is.
const API_AUDIENCE = 'application-quality-api';
const RESOURCE = 'urn:application-quality:api';

/** Accounts created by logins, by account id. */
const accounts = new Map();

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

function claimsOf(accountId) {
  return accounts.get(accountId) || { sub: accountId };
}

const configuration = {
  clients: [
    {
      client_id: 'application-quality',
      client_secret: 'application-quality-test-secret',
      redirect_uris: [`${PUBLIC_URL}/oidc/callback/`],
      post_logout_redirect_uris: [`${PUBLIC_URL}/`],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
    {
      // A command-line client of the same realm: its access tokens are used on the REST API.
      client_id: 'aq-cli',
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/cli-callback'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: ['oidc-provider test cookie key'] },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'given_name', 'family_name', 'groups'],
    email: ['email'],
  },
  // Scope claims in the ID token too, as Keycloak does by default.
  conformIdTokenClaims: false,
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => claimsOf(id),
  }),
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'openid profile email',
        audience: API_AUDIENCE,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  // Keycloak puts the username into access tokens; so does this provider.
  extraTokenClaims: async (_ctx, token) => {
    if (!token.accountId) return undefined;
    const c = claimsOf(token.accountId);
    return { preferred_username: c.preferred_username, groups: c.groups };
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    Session: 600,
    Grant: 600,
  },
};

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration);

  provider.use(async (ctx, next) => {
    const m = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (!m) return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (ctx.method === 'GET' && !m[2]) {
      ctx.body = { uid: details.uid, prompt: details.prompt.name, params: details.params };
      return undefined;
    }
    if (ctx.method !== 'POST' || !m[2]) return next();
    const form = await readForm(ctx.req);
    const login = form.get('login');
    if (!login) {
      ctx.status = 400;
      ctx.body = { error: 'login is required' };
      return undefined;
    }
    accounts.set(login, {
      sub: login,
      preferred_username: form.get('username') || login,
      email: form.get('email') || `${login}@example.org`,
      given_name: form.get('given_name') || login,
      family_name: form.get('family_name') || '',
      groups: (form.get('groups') || '').split(',').filter(Boolean),
    });
    const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    grant.addResourceScope(RESOURCE, details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(
      ctx.req,
      ctx.res,
      { login: { accountId: login }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
    ctx.respond = false;
    return undefined;
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// The test process owns this one: end with it.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
