/**
 * node:crypto, loaded on first use: the hook's migrate and restore filters and most releases never
 * parse a certificate, and the module is a noticeable part of a hook call's start-up (docs/BENCH.md,
 * "Issue 11/12 changes vs. the previous hook"). Computation only: the core stays pure.
 */
import type * as Crypto from 'node:crypto';

let loaded: typeof Crypto | undefined;
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const crypto = (): typeof Crypto => (loaded ??= require('node:crypto') as typeof Crypto);

/** A parsed X.509 certificate (PEM text or DER bytes). */
export const x509 = (src: string | Uint8Array): Crypto.X509Certificate => new (crypto().X509Certificate)(typeof src === 'string' ? src : Buffer.from(src));

export type X509Certificate = Crypto.X509Certificate;
