import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RefusedError } from '../../src/core/errors';
import { openArchive } from '../../src/io/archive';
import { io, tempDir } from './helpers';

const UUID = '11111111-2222-4333-8444-555555555555';
const T0 = new Date('2025-01-01T10:00:00Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);

async function hosts() {
  const root = path.join(await tempDir(), 'archive');
  const a = await openArchive({ root, host: 'alpha', hostId: 'id-alpha', io });
  const b = await openArchive({ root, host: 'beta', hostId: 'id-beta', io });
  return { root, a, b, dir: path.join(root, UUID) };
}

describe('claims', () => {
  it('creates a claim, then refreshes it for the same host keeping the token', async () => {
    const { a, dir } = await hosts();
    const c1 = await a.claim(UUID, { vmName: 'vm1', now: T0 });
    expect(c1.how).toBe('new');
    expect(c1.claim).toMatchObject({ host: 'alpha', hostId: 'id-alpha', vmName: 'vm1', since: T0.toISOString(), expires: null });
    const c2 = await a.claim(UUID, { vmName: 'vm1', now: at(60), leaseSeconds: 30 });
    expect(c2.how).toBe('refreshed');
    expect(c2.claim.token).toBe(c1.claim.token);
    expect(c2.claim.expires).toBe(at(90).toISOString());
    expect(await a.claimInfo(UUID)).toEqual(c2.claim);
    expect((await fs.stat(path.join(dir, 'claim.json'))).mode & 0o777).toBe(0o600);
  });

  it('refuses another host while the claim is live, naming holder, time and fix in one line', async () => {
    const { a, b } = await hosts();
    await a.claim(UUID, { vmName: 'vm1', now: T0, leaseSeconds: 600 });
    const err = await b.claim(UUID, { vmName: 'vm1', now: at(599) }).catch((e) => e);
    expect(err).toBeInstanceOf(RefusedError);
    expect(err.message).toBe(
      `vm1: NVRAM is claimed by host alpha (host id id-alpha) since ${T0.toISOString()} (the VM may run there); if it does not, run: ovmf-hook nvram unlock vm1`,
    );
  });

  it('never expires with leaseSeconds 0; unlock (breakClaim) frees it', async () => {
    const { a, b } = await hosts();
    await a.claim(UUID, { vmName: 'vm1', now: T0 });
    await expect(b.claim(UUID, { vmName: 'vm1', now: at(10 * 365 * 86400) })).rejects.toBeInstanceOf(RefusedError);
    expect((await b.breakClaim(UUID))?.host).toBe('alpha');
    expect((await b.claim(UUID, { vmName: 'vm1', now: T0 })).how).toBe('new');
  });

  it('takes over an expired claim, keeping the old one aside', async () => {
    const { a, b, dir } = await hosts();
    const old = await a.claim(UUID, { vmName: 'vm1', now: T0, leaseSeconds: 60 });
    const taken = await b.claim(UUID, { vmName: 'vm1', now: at(61), leaseSeconds: 60 });
    expect(taken.how).toBe('took-over');
    expect(taken.previous?.token).toBe(old.claim.token);
    expect((await a.claimInfo(UUID))?.host).toBe('beta');
    expect(await fs.readdir(dir)).toContain(`claim.stale-${old.claim.token}.json`);
    // the old holder can no longer release it
    expect(await a.releaseClaim(UUID, old.claim.token)).toBe(false);
    expect(await a.releaseClaim(UUID, 'id-alpha')).toBe(false);
    expect((await a.claimInfo(UUID))?.host).toBe('beta');
  });

  it('releases only its own claim, by token or host id', async () => {
    const { a, b, dir } = await hosts();
    const c = await a.claim(UUID, { vmName: 'vm1', now: T0 });
    expect(await b.releaseClaim(UUID, 'id-beta')).toBe(false);
    expect(await a.releaseClaim(UUID, c.claim.token)).toBe(true);
    expect(await a.claimInfo(UUID)).toBeNull();
    expect(await fs.readdir(dir)).toEqual([]);
    await a.claim(UUID, { vmName: 'vm1', now: T0 });
    expect(await a.releaseClaim(UUID, 'id-alpha')).toBe(true);
  });

  it('of several hosts racing for one free or expired claim exactly one wins', async () => {
    const { root, a } = await hosts();
    const others = await Promise.all(
      Array.from({ length: 6 }, (_, i) => openArchive({ root, host: `h${i}`, hostId: `id-${i}`, io })),
    );
    for (const expired of [false, true]) {
      if (expired) await a.claim(UUID, { vmName: 'vm1', now: T0, leaseSeconds: 1 });
      const rs = await Promise.allSettled(others.map((o) => o.claim(UUID, { vmName: 'vm1', now: at(5) })));
      const won = rs.filter((r) => r.status === 'fulfilled');
      expect(won).toHaveLength(1);
      for (const r of rs) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(RefusedError);
      const holder = await a.claimInfo(UUID);
      expect(holder?.token).toBe((won[0] as PromiseFulfilledResult<{ claim: { token: string } }>).value.claim.token);
      await a.breakClaim(UUID);
    }
  });
});
