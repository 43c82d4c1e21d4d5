// node-oidc-provider configured like the IdP under `python -m bench --compare`: the same key
// algorithms (RS256 and ES256), equivalent clients, its in-memory adapter, one process or a
// `cluster` of several. Usage: node server.js --port N [--workers N] [--secrets FILE]
//
// FILE (JSON) names the client secrets; the keys are generated at start-up and never written.
// POST /__bench/mint (one process only: the in-memory adapter is per process) stores grants and
// tokens in bulk so that the benchmark measures the endpoints, not the interaction pages.
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    workers: { type: 'string', default: '1' },
    secrets: { type: 'string' },
  },
});
const port = Number(args.port);
const workers = Number(args.workers);
const issuer = `http://127.0.0.1:${port}`;
const secrets = JSON.parse(fs.readFileSync(args.secrets, 'utf8'));
const REDIRECT_URI = 'http://127.0.0.1/callback';

// The client_credentials client of each algorithm asks for a resource by default, so that both
// servers answer the same request (no `resource` parameter) with a signed JWT (RFC 9068 / 8707).
const RESOURCE_ALG = { 'urn:bench:rs256': 'RS256', 'urn:bench:es256': 'ES256' };
const CLIENT_RESOURCE = { 'cc-rs256': 'urn:bench:rs256', 'cc-es256': 'urn:bench:es256' };

function signingKeys() {
  // Generated in the primary and handed to every worker, so the cluster publishes one JWKS.
  console.error(`process ${process.pid} generates its signing keys`);
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return [
    { ...rsa.export({ format: 'jwk' }), alg: 'RS256', use: 'sig', kid: 'bench-rs256' },
    { ...ec.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' },
  ];
}

// The provider's own in-memory adapter, on a store that never evicts: its default store keeps the
// last 1,000 entries only (a development default), so a run that mints or rotates more than that
// would lose grants and codes to eviction and count node's refusals as errors.
const store = new LRU({ maxSize: 100_000_000 });
const adapter = (model) => new MemoryAdapter(model, store);

function configuration(keys) {
  const confidential = (clientId, extra) => ({
    client_id: clientId,
    client_secret: secrets[clientId],
    token_endpoint_auth_method: 'client_secret_basic',
    ...extra,
  });
  return {
    adapter,
    clients: [
      confidential('cc-rs256', { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }),
      confidential('cc-es256', { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }),
      confidential('rp', {
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [REDIRECT_URI],
      }),
      confidential('rs', { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }),
    ],
    jwks: { keys },
    cookies: { keys: [secrets.cookie] },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'api'],
    claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub, name: 'Bench User', email: `${sub}@example.com`, email_verified: true }),
    }),
    // The IdP rotates every refresh token it accepts.
    rotateRefreshToken: true,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true, allowedPolicy: async (_ctx, client) => client.clientAuthMethod !== 'none' },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, client, oneOf) => oneOf || CLIENT_RESOURCE[client.clientId],
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx, resource) => {
          if (!RESOURCE_ALG[resource]) throw new Provider.errors.InvalidTarget();
          return { scope: 'api', accessTokenFormat: 'jwt', jwt: { sign: { alg: RESOURCE_ALG[resource] } } };
        },
      },
    },
  };
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

// {kind: "access"|"refresh"|"code", count, subjects: [..], scope, code_challenge} -> {tokens: [..]}
async function mint(provider, body) {
  const client = await provider.Client.find('rp');
  const scope = body.scope || 'openid profile email offline_access';
  const subjects = body.subjects?.length ? body.subjects : ['bench-user'];
  const tokens = [];
  for (let i = 0; i < body.count; i += 1) {
    const accountId = subjects[i % subjects.length];
    const grant = new provider.Grant({ accountId, clientId: client.clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const common = { accountId, client, grantId, scope, authTime: Math.floor(Date.now() / 1000) };
    let token;
    if (body.kind === 'access') token = new provider.AccessToken({ ...common, gty: 'authorization_code' });
    else if (body.kind === 'refresh') token = new provider.RefreshToken({ ...common, gty: 'authorization_code' });
    else if (body.kind === 'code') {
      token = new provider.AuthorizationCode({
        ...common, redirectUri: REDIRECT_URI, codeChallenge: body.code_challenge, codeChallengeMethod: 'S256',
      });
    } else throw new Error(`unknown kind ${body.kind}`);
    tokens.push(await token.save());
  }
  return { tokens };
}

function serve(keys) {
  const provider = new Provider(issuer, configuration(keys));
  const callback = provider.callback();
  const server = http.createServer(async (req, res) => {
    if (!req.url.startsWith('/__bench/')) return callback(req, res);
    try {
      if (workers > 1) throw new Error('minting needs one process: the in-memory adapter is per process');
      const answer = await mint(provider, await readJson(req));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    } catch (error) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(String(error.message));
    }
    return undefined;
  });
  // Each step of the start-up is logged: a server that never answers is reported with this log.
  server.on('error', (error) => {
    console.error(`process ${process.pid} cannot listen on ${issuer}: ${error.message}`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => console.error(`process ${process.pid} listening on ${issuer}`));
}

if (workers > 1 && cluster.isPrimary) {
  const keys = signingKeys();
  console.error(`primary ${process.pid} forks ${workers} workers`);
  for (let i = 0; i < workers; i += 1) cluster.fork({ BENCH_KEYS: JSON.stringify(keys) });
  cluster.on('online', (worker) => console.error(`worker ${worker.process.pid} online`));
  cluster.on('exit', (worker, code, signal) => {
    console.error(`worker ${worker.process.pid} exited with ${code ?? signal}`);
    process.exit(1);
  });
} else {
  serve(process.env.BENCH_KEYS ? JSON.parse(process.env.BENCH_KEYS) : signingKeys());
}
