#!/usr/bin/env node
// Slipway test identity provider: a real OpenID provider (oidc-provider@9)
// behind a small Koa app of ours that adds a login form, automatic consent
// and test-only admin endpoints (group changes, key rotation, id_token
// tampering). TEST USE ONLY: the admin endpoints have no authentication.
//
//   node scripts/idp/idp.mjs --port P --config FILE
//
// Prints exactly one line `IDP_READY <issuer>` to stdout once listening;
// everything else goes to stderr. See README.md beside this file.

import { log } from './stdio.mjs'; // first: keeps stdout for IDP_READY only

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Koa from 'koa';
import * as jose from 'jose';
import Provider, { errors as oidcErrors } from 'oidc-provider';

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  const out = { port: 0, host: '127.0.0.1', config: undefined };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const value = () => {
      const v = argv[i + 1];
      if (v === undefined) throw new Error(`${a} needs a value`);
      i += 1;
      return v;
    };
    if (a === '--port') out.port = Number(value());
    else if (a.startsWith('--port=')) out.port = Number(a.slice(7));
    else if (a === '--config') out.config = value();
    else if (a.startsWith('--config=')) out.config = a.slice(9);
    else if (a === '--help' || a === '-h') {
      process.stderr.write('usage: node idp.mjs --port P --config FILE\n');
      process.exit(0);
    } else throw new Error(`unknown argument: ${a}`);
  }
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) {
    throw new Error('--port must be an integer 0..65535');
  }
  if (!out.config) throw new Error('--config FILE is required');
  return out;
}

// ---------------------------------------------------------------- config

function loadConfig(file) {
  const raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  const clients = raw.clients ?? [];
  const users = raw.users ?? [];
  if (!Array.isArray(clients) || clients.length === 0) throw new Error('config: "clients" must be a non-empty array');
  if (!Array.isArray(users)) throw new Error('config: "users" must be an array');
  for (const c of clients) {
    if (typeof c.client_id !== 'string' || !c.client_id) throw new Error('config: client without client_id');
    if (typeof c.client_secret !== 'string' || !c.client_secret) throw new Error(`config: client ${c.client_id} needs client_secret`);
    if (!Array.isArray(c.redirect_uris) || c.redirect_uris.length === 0) throw new Error(`config: client ${c.client_id} needs redirect_uris`);
  }
  const byUsername = new Map();
  const bySub = new Map();
  for (const u of users) {
    for (const k of ['username', 'password', 'sub']) {
      if (typeof u[k] !== 'string' || !u[k]) throw new Error(`config: every user needs a string "${k}"`);
    }
    const user = {
      username: u.username,
      password: u.password,
      sub: u.sub,
      email: u.email,
      name: u.name,
      groups: Array.isArray(u.groups) ? [...u.groups] : [],
    };
    if (byUsername.has(user.username)) throw new Error(`config: duplicate username ${user.username}`);
    if (bySub.has(user.sub)) throw new Error(`config: duplicate sub ${user.sub}`);
    byUsername.set(user.username, user);
    bySub.set(user.sub, user);
  }
  return { clients, byUsername, bySub };
}

// ---------------------------------------------------------------- adapter
// One in-memory store shared by every Provider instance we build, so that
// sessions, interactions, grants and codes survive a key rotation (which
// rebuilds the Provider).

const store = new Map(); // key -> { payload, expiresAt }
const now = () => Date.now();

function storeGet(key) {
  const e = store.get(key);
  if (!e) return undefined;
  if (e.expiresAt !== undefined && e.expiresAt <= now()) {
    store.delete(key);
    return undefined;
  }
  return e.payload;
}

function storeSet(key, payload, expiresIn) {
  store.set(key, {
    payload,
    expiresAt: typeof expiresIn === 'number' ? now() + expiresIn * 1000 : undefined,
  });
}

// Periodically drop expired entries.
const sweeper = setInterval(() => {
  const t = now();
  for (const [k, e] of store) if (e.expiresAt !== undefined && e.expiresAt <= t) store.delete(k);
}, 60_000);
sweeper.unref();

const grantable = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
]);

class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    if (this.model === 'Session') storeSet(`sessionUid:${payload.uid}`, id, expiresIn);
    if (payload.userCode) storeSet(`userCode:${payload.userCode}`, id, expiresIn);
    if (grantable.has(this.model) && payload.grantId) {
      const gk = `grant:${payload.grantId}`;
      const members = storeGet(gk) ?? [];
      if (!members.includes(key)) members.push(key);
      storeSet(gk, members, expiresIn);
    }
    storeSet(key, payload, expiresIn);
  }

  async find(id) {
    return storeGet(this.key(id));
  }

  async findByUid(uid) {
    const id = storeGet(`sessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = storeGet(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const p = storeGet(this.key(id));
    if (p) p.consumed = Math.floor(now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const gk = `grant:${grantId}`;
    for (const key of storeGet(gk) ?? []) store.delete(key);
    store.delete(gk);
  }
}

// ---------------------------------------------------------------- keys

async function newSigningKey() {
  const { privateKey } = await jose.generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  jwk.kid = `k-${crypto.randomBytes(8).toString('hex')}`;
  jwk.alg = 'RS256';
  jwk.use = 'sig';
  return jwk;
}

// ---------------------------------------------------------------- tampering

const TAMPER_MODES = new Set(['none', 'wrong_signature', 'expired', 'wrong_audience', 'wrong_nonce', 'wrong_issuer']);

async function tamperIdToken(idToken, mode, currentJwk, rogueJwk) {
  const header = jose.decodeProtectedHeader(idToken);
  const payload = jose.decodeJwt(idToken);
  const t = Math.floor(now() / 1000);
  let signWith = currentJwk;
  switch (mode) {
    case 'wrong_signature':
      signWith = rogueJwk; // same kid as the real key, different key material
      break;
    case 'expired':
      payload.exp = t - 3600;
      payload.iat = t - 7200;
      break;
    case 'wrong_audience':
      payload.aud = 'someone-else';
      if ('azp' in payload) delete payload.azp;
      break;
    case 'wrong_nonce':
      payload.nonce = 'forged';
      break;
    case 'wrong_issuer':
      payload.iss = 'http://evil.example';
      break;
    default:
      return idToken;
  }
  const key = await jose.importJWK(signWith, 'RS256');
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ ...header, alg: 'RS256', kid: header.kid })
    .sign(key);
}

// ---------------------------------------------------------------- HTML

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function loginPage({ action, clientId, username = '', error }) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in - Slipway test IdP</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}
main{max-width:22rem;margin:4rem auto;background:#fff;padding:1.5rem 2rem;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.2)}
label{display:block;margin-top:.8rem}
input{width:100%;box-sizing:border-box;padding:.5rem;margin-top:.25rem}
button{margin-top:1.2rem;width:100%;padding:.6rem}
.error{color:#b00020}
</style>
</head>
<body>
<main>
<h1>Sign in</h1>
<p>to continue to <strong>${esc(clientId)}</strong> (Slipway test IdP)</p>
${error ? `<p class="error" id="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="${esc(action)}" autocomplete="off">
<label for="username">Username</label>
<input id="username" name="username" type="text" value="${esc(username)}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" required>
<button id="submit" type="submit">Sign in</button>
</form>
</main>
</body>
</html>
`;
}

function errorPage(title, message) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body><h1>${esc(title)}</h1><pre>${esc(message)}</pre></body></html>
`;
}

// ---------------------------------------------------------------- helpers

async function readBody(req, limit = 1024 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(ctx) {
  const text = await readBody(ctx.req);
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch {
    ctx.throw(400, 'body must be JSON');
  }
  return undefined;
}

function isLoopback(addr) {
  if (!addr) return false;
  return addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.');
}

function timingSafeEqualStr(a, b) {
  const ha = crypto.createHash('sha256').update(String(a)).digest();
  const hb = crypto.createHash('sha256').update(String(b)).digest();
  return crypto.timingSafeEqual(ha, hb);
}

// ---------------------------------------------------------------- main

const SCOPES = ['openid', 'profile', 'email', 'groups'];
const CLAIMS = {
  openid: ['sub'],
  profile: ['name'],
  email: ['email'],
  groups: ['groups'],
};
const ALL_CLAIMS = ['sub', 'name', 'email', 'groups'];

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const cfg = loadConfig(args.config);

  const state = {
    issuer: undefined,
    keys: [], // private JWKs, newest first
    rogueKey: undefined, // private JWK with the current key's kid
    tamper: 'none',
    provider: undefined,
    providerHandler: undefined,
    appHandler: undefined,
  };
  const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

  const server = http.createServer((req, res) => {
    if (!state.appHandler) {
      res.statusCode = 503;
      res.end('starting\n');
      return;
    }
    state.appHandler(req, res);
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(args.port, args.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address();
  state.issuer = `http://${args.host}:${port}`;

  async function tamperMiddleware(ctx, next) {
    await next();
    if (state.tamper === 'none') return;
    if (ctx.oidc?.route !== 'token' || ctx.status !== 200) return;
    const body = ctx.body;
    if (!body || typeof body !== 'object' || typeof body.id_token !== 'string') return;
    const original = body.id_token;
    const tampered = await tamperIdToken(original, state.tamper, state.keys[0], state.rogueKey);
    ctx.body = { ...body, id_token: tampered };
    log(`tamper: id_token rewritten (${state.tamper})`);
  }

  function buildProvider() {
    const configuration = {
      adapter: SharedMemoryAdapter,
      clients: cfg.clients.map((c) => {
        const meta = {
          client_id: c.client_id,
          client_secret: c.client_secret,
          redirect_uris: c.redirect_uris,
          grant_types: ['authorization_code'],
          response_types: ['code'],
          token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
          id_token_signed_response_alg: 'RS256',
        };
        if (Array.isArray(c.post_logout_redirect_uris)) meta.post_logout_redirect_uris = c.post_logout_redirect_uris;
        return meta;
      }),
      clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
      jwks: { keys: state.keys },
      cookies: { keys: cookieKeys },
      scopes: SCOPES,
      claims: CLAIMS,
      conformIdTokenClaims: false, // scope claims (incl. groups) go into the id_token
      responseTypes: ['code'],
      pkce: { required: () => true }, // oidc-provider 9 only supports S256
      features: {
        devInteractions: { enabled: false },
        userinfo: { enabled: true },
        rpInitiatedLogout: { enabled: true },
      },
      interactions: {
        url(ctx, interaction) {
          return `/interaction/${interaction.uid}`;
        },
      },
      async findAccount(ctx, sub) {
        const user = cfg.bySub.get(sub);
        if (!user) return undefined;
        return {
          accountId: user.sub,
          async claims() {
            const out = { sub: user.sub, groups: [...user.groups] };
            if (user.email !== undefined) out.email = user.email;
            if (user.name !== undefined) out.name = user.name;
            return out;
          },
        };
      },
      async renderError(ctx, out, error) {
        ctx.type = 'html';
        ctx.body = errorPage('Error', `${out.error}${out.error_description ? `: ${out.error_description}` : ''}`);
        if (error?.status >= 500) log('renderError', error);
      },
      ttl: {
        AccessToken: 3600,
        AuthorizationCode: 600,
        IdToken: 3600,
        Interaction: 3600,
        Session: 86400,
        Grant: 86400,
      },
    };
    const provider = new Provider(state.issuer, configuration);
    provider.use(tamperMiddleware);
    provider.on('server_error', (ctx, err) => log('server_error', err));
    provider.on('grant.error', (ctx, err) => log('grant.error', err.message, err.error_description ?? ''));
    provider.on('authorization.error', (ctx, err) => log('authorization.error', err.message, err.error_description ?? ''));
    provider.on('userinfo.error', (ctx, err) => log('userinfo.error', err.message, err.error_description ?? ''));
    return provider;
  }

  async function installProvider() {
    const provider = buildProvider();
    const handler = provider.callback();
    state.provider = provider;
    state.providerHandler = handler;
  }

  async function rotateKeys() {
    const key = await newSigningKey();
    state.keys = [key, ...state.keys];
    const rogue = await newSigningKey();
    rogue.kid = key.kid;
    state.rogueKey = rogue;
    await installProvider();
    return key.kid;
  }

  // Grant every requested supported scope and the standard claims.
  async function autoGrant(provider, details, accountId, { existing } = {}) {
    const { params } = details;
    let grant;
    if (existing && details.grantId) grant = await provider.Grant.find(details.grantId);
    if (!grant) grant = new provider.Grant({ accountId, clientId: params.client_id });
    const requested = String(params.scope ?? '').split(' ').filter((s) => SCOPES.includes(s));
    if (!requested.includes('openid')) requested.unshift('openid');
    grant.addOIDCScope(requested.join(' '));
    const missingClaims = details.prompt?.details?.missingOIDCClaims ?? [];
    grant.addOIDCClaims([...new Set([...ALL_CLAIMS, ...missingClaims])]);
    const missingResource = details.prompt?.details?.missingResourceScopes ?? {};
    for (const [indicator, scopes] of Object.entries(missingResource)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    return grant.save();
  }

  const app = new Koa();
  app.silent = true;

  // request log + error handling
  app.use(async (ctx, next) => {
    const started = now();
    ctx.res.once('finish', () => log(`${ctx.method} ${ctx.url} -> ${ctx.res.statusCode} (${now() - started}ms)`));
    try {
      await next();
    } catch (err) {
      if (err instanceof oidcErrors.SessionNotFound) {
        ctx.status = 400;
        ctx.type = 'html';
        ctx.body = errorPage('Login session not found', `${err.message}: ${err.error_description ?? ''}\nStart again from the application.`);
        return;
      }
      const status = err.status ?? err.statusCode ?? 500;
      if (status >= 500) log('error', err);
      ctx.status = status;
      ctx.body = { error: err.expose || status < 500 ? err.message : 'internal error' };
    }
  });

  // admin endpoints (test-only, loopback only, no auth)
  app.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/__admin/')) return next();
    if (!isLoopback(ctx.req.socket.remoteAddress)) ctx.throw(403, 'admin endpoints are loopback only');

    const p = ctx.path;
    if (p === '/__admin/health' && ctx.method === 'GET') {
      ctx.body = { ok: true, issuer: state.issuer, kid: state.keys[0].kid, tamper: state.tamper };
      return undefined;
    }
    let m = p.match(/^\/__admin\/users\/([^/]+)$/);
    if (m && ctx.method === 'POST') {
      const username = decodeURIComponent(m[1]);
      const user = cfg.byUsername.get(username);
      if (!user) ctx.throw(404, `unknown user ${username}`);
      const body = await readJson(ctx);
      if (!Array.isArray(body.groups) || !body.groups.every((g) => typeof g === 'string')) {
        ctx.throw(400, '"groups" must be an array of strings');
      }
      user.groups = [...body.groups];
      log(`admin: groups of ${username} set to ${JSON.stringify(user.groups)}`);
      ctx.body = { username: user.username, sub: user.sub, groups: user.groups };
      return undefined;
    }
    if (m && ctx.method === 'GET') {
      const user = cfg.byUsername.get(decodeURIComponent(m[1]));
      if (!user) ctx.throw(404, 'unknown user');
      ctx.body = { username: user.username, sub: user.sub, email: user.email, name: user.name, groups: user.groups };
      return undefined;
    }
    if (p === '/__admin/rotate-keys' && ctx.method === 'POST') {
      const kid = await rotateKeys();
      log(`admin: rotated signing key, new kid ${kid}`);
      ctx.body = { kid, kids: state.keys.map((k) => k.kid) };
      return undefined;
    }
    m = p === '/__admin/tamper';
    if (m && ctx.method === 'POST') {
      const body = await readJson(ctx);
      if (!TAMPER_MODES.has(body.mode)) ctx.throw(400, `"mode" must be one of ${[...TAMPER_MODES].join(', ')}`);
      state.tamper = body.mode;
      log(`admin: tamper mode ${state.tamper}`);
      ctx.body = { mode: state.tamper };
      return undefined;
    }
    if (m && ctx.method === 'GET') {
      ctx.body = { mode: state.tamper };
      return undefined;
    }
    ctx.throw(404, 'no such admin endpoint');
    return undefined;
  });

  // interactions: our login form + automatic consent
  app.use(async (ctx, next) => {
    const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
    if (!m) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'POST') ctx.throw(405);
    ctx.set('Cache-Control', 'no-store');
    const provider = state.provider;
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== m[1]) ctx.throw(400, 'interaction mismatch');
    const { prompt, params } = details;
    const action = `/interaction/${details.uid}`;

    if (prompt.name === 'consent') {
      // Configured (first-party) clients: consent is granted automatically.
      const grantId = await autoGrant(provider, details, details.session.accountId, { existing: true });
      ctx.respond = false;
      await provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return undefined;
    }
    if (prompt.name !== 'login') ctx.throw(400, `unsupported prompt ${prompt.name}`);

    if (ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = loginPage({ action, clientId: params.client_id });
      return undefined;
    }

    const form = new URLSearchParams(await readBody(ctx.req));
    const username = form.get('username') ?? '';
    const password = form.get('password') ?? '';
    const user = cfg.byUsername.get(username);
    const ok = user !== undefined && timingSafeEqualStr(password, user.password);
    if (!ok) {
      log(`login failed for ${JSON.stringify(username)}`);
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = loginPage({ action, clientId: params.client_id, username, error: 'Invalid username or password' });
      return undefined;
    }
    log(`login ok for ${username} (sub ${user.sub})`);
    const grantId = await autoGrant(provider, details, user.sub);
    ctx.respond = false;
    await provider.interactionFinished(ctx.req, ctx.res, {
      login: { accountId: user.sub },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    return undefined;
  });

  // everything else: the current Provider (swapped on key rotation)
  app.use(async (ctx) => {
    ctx.respond = false;
    await state.providerHandler(ctx.req, ctx.res);
  });

  await rotateKeys();
  state.appHandler = app.callback();

  process.stdout.write(`IDP_READY ${state.issuer}\n`);
  log(`listening; issuer ${state.issuer}; clients ${cfg.clients.map((c) => c.client_id).join(',')}; users ${[...cfg.byUsername.keys()].join(',')}`);

  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: shutting down`);
    server.close(() => {
      log('closed');
      process.exit(0);
    });
    server.closeIdleConnections?.();
    setTimeout(() => {
      server.closeAllConnections?.();
      process.exit(0);
    }, 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  log('fatal', err);
  process.exit(1);
});
