// Imported first by idp.mjs: stdout is reserved for the single IDP_READY
// line, so route console output (including oidc-provider's notices, which
// use console.info) to stderr before any dependency is evaluated.
import * as util from 'node:util';

export function log(...args) {
  process.stderr.write(`[idp ${new Date().toISOString()}] ${util.format(...args)}\n`);
}

console.log = (...args) => log(...args);
console.info = (...args) => log(...args);
console.warn = (...args) => log(...args);
console.debug = (...args) => log(...args);
