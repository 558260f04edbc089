#!/usr/bin/env node
// Smoke test for the Slipway test IdP (node only, no browser).
//
//   node scripts/idp/smoke.mjs
//
// Starts idp.mjs on port 0 with a temporary config, drives the full
// authorization code + PKCE flow as a client would (cookies, login form,
// redirects, token request), then checks PKCE enforcement, group changes,
// key rotation and every tamper mode. Exits 0 when all checks pass, 1
// otherwise; the last line is "N passed, N failed".

import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as jose from 'jose';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLIENT_ID = 'slipway-smoke';
const CLIENT_SECRET = 'smoke-secret-123';
const REDIRECT_URI = 'http://127.0.0.1:1/auth/callback'; // never contacted
const SCOPE = 'openid profile email groups';

let passed = 0;
let failed = 0;
function check(name, cond, extra) {
  if (cond) {
    passed += 1;
    process.stdout.write(`ok   - ${name}\n`);
  } else {
    failed += 1;
    process.stdout.write(`FAIL - ${name}${extra !== undefined ? ` :: ${typeof extra === 'string' ? extra : JSON.stringify(extra)}` : ''}\n`);
  }
  return cond;
}

// ---------------------------------------------------------------- IdP process

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-idp-smoke-'));
const configFile = path.join(tmp, 'idp.json');
fs.writeFileSync(configFile, JSON.stringify({
  clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [REDIRECT_URI] }],
  users: [
    { username: 'alice', password: 'alice-pw', sub: 'sub-alice', email: 'alice@example.test', name: 'Alice Admin', groups: ['slipway-admins', 'dev'] },
    { username: 'bob', password: 'bob-pw', sub: 'sub-bob', email: 'bob@example.test', name: 'Bob Viewer', groups: [] },
  ],
}, null, 2));

const stderrLog = path.join(tmp, 'idp.stderr.log');
const stderrFd = fs.openSync(stderrLog, 'w');
const idp = spawn(process.execPath, [path.join(here, 'idp.mjs'), '--port', '0', '--config', configFile], {
  stdio: ['ignore', 'pipe', stderrFd],
});
let stdoutText = '';
const issuer = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('IdP did not print IDP_READY within 20s')), 20_000);
  idp.stdout.on('data', (d) => {
    stdoutText += d;
    const m = stdoutText.match(/^IDP_READY (\S+)\n/);
    if (m) {
      clearTimeout(timer);
      resolve(m[1]);
    }
  });
  idp.once('exit', (code) => {
    clearTimeout(timer);
    reject(new Error(`IdP exited early with ${code}`));
  });
}).catch((err) => {
  process.stdout.write(`FAIL - start: ${err.message}\n${fs.readFileSync(stderrLog, 'utf8')}\n`);
  process.exit(1);
});
check('IDP_READY line names an http://127.0.0.1:<port> issuer', /^http:\/\/127\.0\.0\.1:\d+$/.test(issuer), issuer);

// ---------------------------------------------------------------- HTTP helpers

class Jar {
  constructor() {
    this.cookies = new Map(); // name -> { value, path }
  }

  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let cpath = '/';
      let expired = false;
      for (const a of attrs) {
        const [k, v] = a.split('=');
        if (k.toLowerCase() === 'path') cpath = v;
        if (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now()) expired = true;
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
      }
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, { value, path: cpath });
    }
  }

  header(url) {
    const p = new URL(url).pathname;
    return [...this.cookies]
      .filter(([, c]) => p === c.path || p.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/')
      .map(([n, c]) => `${n}=${c.value}`)
      .join('; ');
  }
}

async function request(jar, url, opts = {}) {
  const headers = { ...(opts.headers ?? {}) };
  const cookie = jar?.header(url);
  if (cookie) headers.cookie = cookie;
  const res = await fetch(url, { ...opts, headers, redirect: 'manual' });
  jar?.store(res);
  return res;
}

// Follow redirects within the IdP; stop at (and return) the redirect to the
// client's redirect_uri, or at the first non-redirect response.
async function follow(jar, res, base) {
  let current = res;
  for (let i = 0; i < 10; i += 1) {
    if (current.status < 300 || current.status >= 400) return { res: current };
    const loc = new URL(current.headers.get('location'), base).toString();
    if (loc.startsWith(REDIRECT_URI)) return { callback: new URL(loc) };
    await current.arrayBuffer();
    current = await request(jar, loc);
    base = loc;
  }
  throw new Error('too many redirects');
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function pkcePair() {
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

function authUrl({ state, nonce, challenge, method = 'S256', omitChallenge = false, prompt, scope = SCOPE }) {
  const u = new URL('/auth', issuer);
  u.searchParams.set('client_id', CLIENT_ID);
  u.searchParams.set('response_type', 'code');
  u.searchParams.set('scope', scope);
  u.searchParams.set('redirect_uri', REDIRECT_URI);
  u.searchParams.set('state', state);
  u.searchParams.set('nonce', nonce);
  if (!omitChallenge) {
    u.searchParams.set('code_challenge', challenge);
    u.searchParams.set('code_challenge_method', method);
  }
  if (prompt) u.searchParams.set('prompt', prompt);
  return u.toString();
}

async function startLogin(jar, { omitChallenge = false, method, scope, prompt } = {}) {
  const { verifier, challenge } = pkcePair();
  const state = b64url(crypto.randomBytes(12));
  const nonce = b64url(crypto.randomBytes(12));
  const url = authUrl({ state, nonce, challenge, omitChallenge, method, scope, prompt });
  const out = await follow(jar, await request(jar, url), url);
  return { ...out, verifier, state, nonce };
}

async function submitLogin(jar, formUrl, username, password) {
  const res = await request(jar, formUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username, password }).toString(),
  });
  return follow(jar, res, formUrl);
}

async function tokenRequest({ code, verifier, authMethod = 'client_secret_basic' }) {
  const body = new URLSearchParams({
    grant_type: 'authorization_code',
    code,
    redirect_uri: REDIRECT_URI,
    code_verifier: verifier,
  });
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (authMethod === 'client_secret_basic') {
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64')}`;
  } else {
    body.set('client_id', CLIENT_ID);
    body.set('client_secret', CLIENT_SECRET);
  }
  const res = await fetch(new URL('/token', issuer), { method: 'POST', headers, body: body.toString() });
  return { status: res.status, json: await res.json() };
}

// Full flow in a fresh browser: returns token response + decoded id_token.
async function fullLogin(username, password, { authMethod } = {}) {
  const jar = new Jar();
  const start = await startLogin(jar);
  if (!start.res || start.res.status !== 200) throw new Error(`expected login form, got ${start.res?.status ?? start.callback}`);
  const formUrl = await formUrlOf(jar, start);
  const done = await submitLogin(jar, formUrl, username, password);
  if (!done.callback) throw new Error(`login did not reach redirect_uri (status ${done.res?.status})`);
  const code = done.callback.searchParams.get('code');
  const tok = await tokenRequest({ code, verifier: start.verifier, authMethod });
  if (tok.status !== 200) throw new Error(`token endpoint ${tok.status}: ${JSON.stringify(tok.json)}`);
  return {
    jar,
    start,
    callback: done.callback,
    token: tok.json,
    header: jose.decodeProtectedHeader(tok.json.id_token),
    claims: jose.decodeJwt(tok.json.id_token),
  };
}

async function jwks() {
  const res = await fetch(new URL('/jwks', issuer));
  return res.json();
}

async function verifies(idToken) {
  try {
    const keyset = jose.createLocalJWKSet(await jwks());
    await jose.jwtVerify(idToken, keyset, { algorithms: ['RS256'] });
    return true;
  } catch (err) {
    return err.code ?? err.message;
  }
}

async function admin(pathname, body, method = 'POST') {
  const res = await fetch(new URL(pathname, issuer), {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json().catch(() => null) };
}

// ---------------------------------------------------------------- checks

async function run() {
  // health + discovery
  const health = await admin('/__admin/health', undefined, 'GET');
  check('GET /__admin/health -> 200', health.status === 200, health);
  const disco = await (await fetch(new URL('/.well-known/openid-configuration', issuer))).json();
  check('discovery issuer matches', disco.issuer === issuer, disco.issuer);
  check('discovery: S256 is the only PKCE method', JSON.stringify(disco.code_challenge_methods_supported) === '["S256"]', disco.code_challenge_methods_supported);
  check('discovery: client_secret_basic and client_secret_post', ['client_secret_basic', 'client_secret_post'].every((m) => disco.token_endpoint_auth_methods_supported.includes(m)), disco.token_endpoint_auth_methods_supported);
  check('discovery: scopes include groups', ['openid', 'profile', 'email', 'groups'].every((s) => disco.scopes_supported.includes(s)), disco.scopes_supported);

  // ---- step by step flow, alice
  const jar = new Jar();
  const { verifier, challenge } = pkcePair();
  const state = 'st-' + b64url(crypto.randomBytes(8));
  const nonce = 'n-' + b64url(crypto.randomBytes(8));
  const url = authUrl({ state, nonce, challenge });
  const r1 = await request(jar, url);
  check('GET /auth redirects (303) to the interaction', r1.status === 303 && /^\/interaction\/[^/]+$/.test(r1.headers.get('location')), `${r1.status} ${r1.headers.get('location')}`);
  const formUrl = new URL(r1.headers.get('location'), issuer).toString();
  const r2 = await request(jar, formUrl);
  const html = await r2.text();
  check('interaction URL serves an HTML login form', r2.status === 200 && /text\/html/.test(r2.headers.get('content-type')), r2.status);
  check('form is method=post with username/password inputs and a submit button',
    /<form method="post"/.test(html) && /id="username" name="username"/.test(html) && /id="password" name="password" type="password"/.test(html) && /id="submit" type="submit"/.test(html), html);

  const bad = await request(jar, formUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'username=alice&password=wrong',
  });
  const badHtml = await bad.text();
  check('wrong password re-renders the form (200) with "Invalid username or password"',
    bad.status === 200 && badHtml.includes('Invalid username or password') && badHtml.includes('name="password"'), bad.status);

  const good = await submitLogin(jar, formUrl, 'alice', 'alice-pw');
  check('correct password redirects to redirect_uri with code and state', !!good.callback && !!good.callback.searchParams.get('code') && good.callback.searchParams.get('state') === state, good.callback?.toString() ?? good.res?.status);
  check('callback carries iss (RFC 9207)', good.callback?.searchParams.get('iss') === issuer, good.callback?.searchParams.get('iss'));
  const code = good.callback.searchParams.get('code');

  const unknownCode = await tokenRequest({ code: 'x'.repeat(10), verifier });
  check('token endpoint rejects an unknown code', unknownCode.status === 400 && unknownCode.json.error === 'invalid_grant', unknownCode);

  const tok = await tokenRequest({ code, verifier });
  check('POST /token (client_secret_basic + code_verifier) -> 200 with id_token', tok.status === 200 && typeof tok.json.id_token === 'string', tok);
  const claims = jose.decodeJwt(tok.json.id_token);
  const header = jose.decodeProtectedHeader(tok.json.id_token);
  check('id_token header RS256 with kid', header.alg === 'RS256' && typeof header.kid === 'string' && header.kid === health.json.kid, header);
  check('id_token groups', JSON.stringify(claims.groups) === '["slipway-admins","dev"]', claims.groups);
  check('id_token nonce', claims.nonce === nonce, claims.nonce);
  check('id_token aud', claims.aud === CLIENT_ID || (Array.isArray(claims.aud) && claims.aud.includes(CLIENT_ID)), claims.aud);
  check('id_token iss / sub / email / name', claims.iss === issuer && claims.sub === 'sub-alice' && claims.email === 'alice@example.test' && claims.name === 'Alice Admin', claims);
  check('id_token verifies against JWKS', (await verifies(tok.json.id_token)) === true);
  const ui = await fetch(new URL('/me', issuer), { headers: { authorization: `Bearer ${tok.json.access_token}` } });
  const uiJson = await ui.json();
  check('userinfo returns groups too', ui.status === 200 && JSON.stringify(uiJson.groups) === '["slipway-admins","dev"]', uiJson);

  const replay = await tokenRequest({ code, verifier });
  check('authorization code cannot be used twice (replay also revokes its tokens)', replay.status === 400 && replay.json.error === 'invalid_grant', replay);
  const uiAfter = await fetch(new URL('/me', issuer), { headers: { authorization: `Bearer ${tok.json.access_token}` } });
  check('access token from a replayed code is revoked', uiAfter.status === 401, uiAfter.status);


  // wrong code_verifier
  {
    const j = new Jar();
    const s = await startLogin(j);
    const fu = await formUrlOf(j, s);
    const d = await submitLogin(j, fu, 'bob', 'bob-pw');
    const t = await tokenRequest({ code: d.callback.searchParams.get('code'), verifier: pkcePair().verifier });
    check('token endpoint rejects a wrong code_verifier (invalid_grant)', t.status === 400 && t.json.error === 'invalid_grant', t);
  }

  // client_secret_post
  const post = await fullLogin('bob', 'bob-pw', { authMethod: 'client_secret_post' });
  check('client_secret_post works; bob has empty groups', post.claims.sub === 'sub-bob' && Array.isArray(post.claims.groups) && post.claims.groups.length === 0, post.claims);

  // PKCE required
  {
    const j = new Jar();
    const s = await startLogin(j, { omitChallenge: true });
    const err = s.callback?.searchParams.get('error');
    check('authorization request WITHOUT code_challenge is rejected (invalid_request)', err === 'invalid_request' && !s.callback.searchParams.get('code'), s.callback?.toString() ?? s.res?.status);
  }
  {
    const j = new Jar();
    const s = await startLogin(j, { method: 'plain' });
    const err = s.callback?.searchParams.get('error');
    check('code_challenge_method=plain is rejected', err === 'invalid_request', s.callback?.toString() ?? s.res?.status);
  }

  // existing session: second /auth in the same browser skips the form
  {
    const s = await startLogin(jar);
    check('same browser session: /auth goes straight to redirect_uri with a code', !!s.callback?.searchParams.get('code'), s.res?.status);
  }

  // consent for more scopes on an existing session is granted automatically
  {
    const j = new Jar();
    const s1 = await startLogin(j, { scope: 'openid' });
    const d1 = await submitLogin(j, await formUrlOf(j, s1), 'bob', 'bob-pw');
    const t1 = await tokenRequest({ code: d1.callback.searchParams.get('code'), verifier: s1.verifier });
    const c1 = jose.decodeJwt(t1.json.id_token);
    check('scope=openid only: no groups/email in id_token', c1.sub === 'sub-bob' && c1.groups === undefined && c1.email === undefined, c1);
    const s2 = await startLogin(j, { scope: SCOPE });
    check('wider scope on existing session: auto-consent, straight to redirect_uri', !!s2.callback?.searchParams.get('code'), s2.res?.status);
    const t2 = await tokenRequest({ code: s2.callback.searchParams.get('code'), verifier: s2.verifier });
    const c2 = jose.decodeJwt(t2.json.id_token);
    check('... and that id_token has groups and email', Array.isArray(c2.groups) && c2.email === 'bob@example.test', c2);
    const s3 = await startLogin(j, { prompt: 'login' });
    check('prompt=login on an existing session shows the login form again', s3.res?.status === 200 && (await s3.res.text()).includes('name="password"'), s3.callback?.toString());
  }

  // group change takes effect at next login
  const g = await admin('/__admin/users/alice', { groups: ['viewers'] });
  check('POST /__admin/users/alice -> 200', g.status === 200 && JSON.stringify(g.json.groups) === '["viewers"]', g);
  const after = await fullLogin('alice', 'alice-pw');
  check('next login: id_token groups reflect the change', JSON.stringify(after.claims.groups) === '["viewers"]', after.claims.groups);
  const unknownUser = await admin('/__admin/users/nobody', { groups: [] });
  check('POST /__admin/users/<unknown> -> 404', unknownUser.status === 404, unknownUser);
  const badGroups = await admin('/__admin/users/alice', { groups: 'x' });
  check('POST /__admin/users with non-array groups -> 400', badGroups.status === 400, badGroups);
  await admin('/__admin/users/alice', { groups: ['slipway-admins', 'dev'] });

  // key rotation (with a login in flight across the rotation)
  const oldKid = after.header.kid;
  const jInflight = new Jar();
  const inflight = await startLogin(jInflight);
  const inflightForm = await formUrlOf(jInflight, inflight);
  const rot = await admin('/__admin/rotate-keys', {});
  check('POST /__admin/rotate-keys -> 200 with a new kid', rot.status === 200 && rot.json.kid && rot.json.kid !== oldKid, rot);
  const keys = await jwks();
  check('JWKS serves 2 keys (new + old)', keys.keys.length === 2 && keys.keys.some((k) => k.kid === oldKid) && keys.keys.some((k) => k.kid === rot.json.kid), keys.keys.map((k) => k.kid));
  check('JWKS serves public keys only', keys.keys.every((k) => k.d === undefined && k.p === undefined), keys.keys.map((k) => Object.keys(k)));
  const done = await submitLogin(jInflight, inflightForm, 'alice', 'alice-pw');
  check('a login started before rotation completes after it', !!done.callback?.searchParams.get('code'), done.res?.status);
  const tInflight = await tokenRequest({ code: done.callback.searchParams.get('code'), verifier: inflight.verifier });
  check('... and its code is redeemable after rotation', tInflight.status === 200, tInflight);
  const rotated = await fullLogin('alice', 'alice-pw');
  check('next id_token is signed with the NEW kid', rotated.header.kid === rot.json.kid, rotated.header);
  check('new id_token verifies against JWKS', (await verifies(rotated.token.id_token)) === true);
  check('old id_token (old kid) still verifies against JWKS', (await verifies(tok.json.id_token)) === true);
  {
    const s = await startLogin(jar);
    check('session from before rotation still valid (no login form)', !!s.callback?.searchParams.get('code'), s.res?.status);
  }

  // tamper modes
  const nowS = Math.floor(Date.now() / 1000);
  const expectations = {
    wrong_signature: async (r) => r.header.kid === rot.json.kid && r.claims.aud === CLIENT_ID && r.claims.iss === issuer
      && (await verifies(r.token.id_token)) === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
    expired: async (r) => r.claims.exp <= nowS - 3500 && r.claims.exp >= nowS - 3700 && (await verifies(r.token.id_token)) === 'ERR_JWT_EXPIRED',
    wrong_audience: async (r) => r.claims.aud === 'someone-else' && (await verifies(r.token.id_token)) === true && r.header.kid === rot.json.kid,
    wrong_nonce: async (r) => r.claims.nonce === 'forged' && r.claims.nonce !== r.start.nonce && (await verifies(r.token.id_token)) === true,
    wrong_issuer: async (r) => r.claims.iss === 'http://evil.example' && (await verifies(r.token.id_token)) === true,
  };
  for (const [mode, expect] of Object.entries(expectations)) {
    const set = await admin('/__admin/tamper', { mode });
    check(`POST /__admin/tamper ${mode} -> 200`, set.status === 200 && set.json.mode === mode, set);
    const r = await fullLogin('alice', 'alice-pw');
    const ok = await expect(r);
    check(`tamper ${mode}: id_token modified as specified`, ok, { header: r.header, claims: r.claims, verify: await verifies(r.token.id_token) });
    check(`tamper ${mode}: other claims intact (sub, groups)`, r.claims.sub === 'sub-alice' && JSON.stringify(r.claims.groups) === '["slipway-admins","dev"]', r.claims);
  }
  const badMode = await admin('/__admin/tamper', { mode: 'bogus' });
  check('POST /__admin/tamper with unknown mode -> 400', badMode.status === 400, badMode);
  await admin('/__admin/tamper', { mode: 'none' });
  const clean = await fullLogin('alice', 'alice-pw');
  check('tamper none: id_token is genuine again', clean.claims.aud === CLIENT_ID && clean.claims.nonce === clean.start.nonce
    && clean.claims.iss === issuer && (await verifies(clean.token.id_token)) === true, clean.claims);

  // graceful SIGTERM
  const exited = new Promise((resolve) => idp.once('exit', (code, signal) => resolve({ code, signal })));
  idp.kill('SIGTERM');
  const ex = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 5000))]);
  check('SIGTERM: exits 0 within 5s', ex !== 'timeout' && ex.code === 0, ex);
  check('stdout had exactly one line (IDP_READY)', stdoutText.trim().split('\n').length === 1, stdoutText);
}

async function formUrlOf(jar, start) {
  // startLogin stopped at the 200 login form; find its URL from the form action
  const html = await start.res.text();
  const m = html.match(/action="([^"]+)"/);
  return new URL(m[1].replace(/&amp;/g, '&'), issuer).toString();
}

try {
  await run();
} catch (err) {
  check(`unexpected error: ${err.stack}`, false);
} finally {
  if (idp.exitCode === null && idp.signalCode === null) idp.kill('SIGKILL');
}
if (failed) {
  process.stdout.write(`--- idp stderr (${stderrLog}) ---\n${fs.readFileSync(stderrLog, 'utf8').split('\n').slice(-60).join('\n')}\n`);
} else {
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(failed ? 1 : 0);
