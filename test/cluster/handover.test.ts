/**
 * Claim hand-over on live migration (src/core/nvram/handover.ts, src/io/claims.ts): the
 * destination's `migrate begin` records itself in the archive, the source's release hands its
 * claim over, and every other start is refused meanwhile — without libvirt, on local directories.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RefusedError } from '../../src/core/errors';
import { handOverTarget, HANDOVER_WINDOW_MS, pendingHandOver, type IncomingRecord } from '../../src/core/nvram/handover';
import type { ClaimInfo } from '../../src/core/nvram/types';
import { sha256 } from '../../src/io/safe-fs';
import { at, fill, receive, start, stop, T0, UUID, worldPerTest, write, type World } from './handover-world';

const newWorld = worldPerTest();
const refusal = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'started',
    (e: Error) => {
      expect(e).toBeInstanceOf(RefusedError);
      return e.message;
    },
  );

/** A runs the VM (gen 1 archived from an earlier run), then B receives it by live migration. */
async function migratedToB(w: World, now = 10): Promise<void> {
  await start(w, w.a, at(0));
  await write(w.a, fill(1));
  await stop(w.a, at(1));
  await start(w, w.a, at(2));
  await write(w.a, fill(2));
  await receive(w, w.b, at(now), fill(2));
}

const claim = (hostId: string): ClaimInfo => ({ host: hostId, hostId, token: 't', vmName: 'vm', since: T0.toISOString(), expires: null, generation: null });
const record = (hostId: string, time = T0): IncomingRecord => ({ host: hostId, hostId, token: 'r', vmName: 'vm', time: time.toISOString(), leaseSeconds: 0 });
const late = new Date(T0.getTime() + HANDOVER_WINDOW_MS + 1000);

describe('hand-over decisions (pure)', () => {
  it.each([
    { what: 'fresh record of another host, reason -', reason: '-', c: claim('A'), r: record('B'), now: T0, to: 'B' },
    { what: 'stale record, reason migrated', reason: 'migrated', c: claim('A'), r: record('B'), now: late, to: 'B' },
    { what: 'stale record, reason -', reason: '-', c: claim('A'), r: record('B'), now: late, to: null },
    { what: 'claim of another host', reason: 'migrated', c: claim('C'), r: record('B'), now: T0, to: null },
    { what: 'no claim', reason: 'migrated', c: null, r: record('B'), now: T0, to: null },
    { what: 'our own record', reason: '-', c: claim('A'), r: record('A'), now: T0, to: null },
    { what: 'no record', reason: 'migrated', c: claim('A'), r: null, now: T0, to: null },
  ])('handOverTarget: $what → $to', ({ reason, c, r, now, to }) => {
    expect(handOverTarget({ claim: c, incoming: r, hostId: 'A', reason, now })?.hostId ?? null).toBe(to);
  });

  it.each([
    { what: 'the source, record fresh', host: 'A', c: claim('A'), r: record('B'), now: T0, pending: true },
    { what: 'a third host', host: 'C', c: claim('A'), r: record('B'), now: T0, pending: true },
    { what: 'a third host, no claim', host: 'C', c: null, r: record('B'), now: T0, pending: true },
    { what: 'the destination itself', host: 'B', c: claim('A'), r: record('B'), now: T0, pending: false },
    { what: 'hand-over done (claim names the destination)', host: 'C', c: claim('B'), r: record('B'), now: T0, pending: false },
    { what: 'record older than the window', host: 'A', c: claim('A'), r: record('B'), now: late, pending: false },
  ])('pendingHandOver for $what: $pending', ({ host, c, r, now, pending }) => {
    expect(pendingHandOver({ claim: c, incoming: r, hostId: host, vmName: 'vm', now }) !== null).toBe(pending);
  });
});

describe('claim hand-over on live migration', () => {
  it('while the migration runs, a third host and the source are refused in one line naming both hosts', async () => {
    const w = await newWorld();
    await migratedToB(w);
    const expected = `vm: NVRAM is being handed over from host a (host id id-a) to host b (host id id-b) by a live migration since ${at(10).toISOString()} (the VM may run on b); if it runs nowhere, run: ovmf-hook nvram unlock vm`;
    expect(await refusal(start(w, w.c, at(11)))).toBe(expected);
    // libvirt refuses a start of a running VM itself; this is the source after its QEMU is gone and before its release ran
    expect(await refusal(start(w, w.a, at(11)))).toBe(expected);
  });

  it('libvirt < 10.5: the source release archives its copy and hands the claim to the destination', async () => {
    const w = await newWorld();
    await migratedToB(w);
    const r = await stop(w.a, at(12), '-');
    expect(r).toMatchObject({ action: 'archived', generation: 2, kind: 'archive', handedOverTo: 'b (host id id-b)' });
    expect(await w.a.archive.claimInfo(UUID)).toMatchObject({ host: 'b', hostId: 'id-b', since: at(12).toISOString() });
    expect(await w.a.archive.incomingInfo(UUID)).toBeNull();
    // the source and a third host are refused by the claim, naming B
    for (const h of [w.a, w.c]) expect(await refusal(start(w, h, at(13)))).toMatch(/^vm: NVRAM is claimed by host b \(host id id-b\)/);
    // B's stop archives as the owner (newest = B's running copy) and gives the claim back
    await write(w.b, fill(3));
    expect(await stop(w.b, at(20), '-')).toMatchObject({ action: 'archived', generation: 3, kind: 'archive' });
    expect(await w.a.archive.claimInfo(UUID)).toBeNull();
    expect((await w.a.archive.newest(UUID))?.sha256).toBe(sha256(fill(3)));
    // and A can start it again, restoring B's copy
    expect(await start(w, w.a, at(21))).toMatchObject({ action: 'restore', generation: 3 });
  });

  it('libvirt ≥ 10.5 (reason migrated): the source skips its archive and hands over, also with a record older than the window', async () => {
    const w = await newWorld();
    await migratedToB(w);
    const lateRelease = new Date(at(10).getTime() + HANDOVER_WINDOW_MS + 5000);
    expect(await stop(w.a, lateRelease, 'migrated')).toMatchObject({ action: 'skip', handedOverTo: 'b (host id id-b)' });
    expect(await w.a.archive.claimInfo(UUID)).toMatchObject({ hostId: 'id-b' });
    expect((await w.a.archive.list(UUID)).map((m) => m.generation)).toEqual([1]);
  });

  it('a hand-over gives the destination its own lease', async () => {
    const w = await newWorld();
    await migratedToB(w);
    await w.b.archive.markIncoming(UUID, { vmName: 'vm', now: at(10), leaseSeconds: 600 });
    await stop(w.a, at(12), 'migrated');
    expect((await w.a.archive.claimInfo(UUID))?.expires).toBe(at(612).toISOString());
  });

  it('a failed migration: the destination release removes its record, the claim stays with the source, which archives at its stop', async () => {
    const w = await newWorld();
    await migratedToB(w);
    // QEMU on B dies mid-migration: libvirt on B runs release; A resumes
    const rb = await stop(w.b, at(11), '-');
    expect(rb.action === 'skip' || (rb.action === 'archived' && rb.kind === 'fenced')).toBe(true);
    expect(await w.a.archive.incomingInfo(UUID)).toBeNull();
    expect(await w.a.archive.claimInfo(UUID)).toMatchObject({ hostId: 'id-a' });
    expect(await refusal(start(w, w.c, at(12)))).toMatch(/^vm: NVRAM is claimed by host a /);
    await write(w.a, fill(4));
    const ra = await stop(w.a, at(30), '-');
    expect(ra).toMatchObject({ action: 'archived', kind: 'archive' });
    expect(ra.handedOverTo).toBeUndefined();
    expect(await w.a.archive.claimInfo(UUID)).toBeNull();
    expect((await w.a.archive.newest(UUID))?.sha256).toBe(sha256(fill(4)));
  });

  it('libvirt < 10.5: a record older than the window is no evidence of a migration: the source gives its claim back and the record goes', async () => {
    const w = await newWorld();
    await migratedToB(w);
    const r = await stop(w.a, new Date(at(10).getTime() + HANDOVER_WINDOW_MS + 1000), '-');
    expect(r.handedOverTo).toBeUndefined();
    expect(await w.a.archive.claimInfo(UUID)).toBeNull();
    expect(await w.a.archive.incomingInfo(UUID)).toBeNull();
  });

  it('a start after the window removes the stale record and goes ahead', async () => {
    const w = await newWorld();
    await migratedToB(w);
    await expect(start(w, w.a, new Date(at(10).getTime() + HANDOVER_WINDOW_MS + 1000))).resolves.toMatchObject({ claim: 'refreshed' });
    expect(await w.a.archive.incomingInfo(UUID)).toBeNull();
  });

  it('a hand-over loses to an expired-claim take-over that came first (one tombstone): the source skips it, the taker owns the VM', async () => {
    const w = await newWorld();
    await start(w, w.a, at(0));
    await w.a.archive.claim(UUID, { vmName: 'vm', now: at(1), leaseSeconds: 5 }); // A's claim expires at 6
    await write(w.a, fill(2));
    await receive(w, w.b, at(2), fill(2));
    await w.a.archive.dropIncoming(UUID, 'id-b'); // C's take-over below happens while no hand-over is pending
    await expect(start(w, w.c, at(10))).resolves.toMatchObject({ claim: 'took-over' });
    await w.b.archive.markIncoming(UUID, { vmName: 'vm', now: at(11) });
    const r = await stop(w.a, at(12), '-');
    expect(r).toMatchObject({ action: 'archived', kind: 'fenced' });
    expect(r.handedOverTo).toBeUndefined();
    expect(await w.a.archive.claimInfo(UUID)).toMatchObject({ hostId: 'id-c' });
  });

  it('nvram unlock (breakClaim) also removes a pending record', async () => {
    const w = await newWorld();
    await migratedToB(w);
    expect((await w.c.archive.breakClaim(UUID))?.hostId).toBe('id-a');
    expect(await w.c.archive.incomingInfo(UUID)).toBeNull();
    await expect(start(w, w.c, at(11))).resolves.toMatchObject({ claim: 'new' });
  });

  it('A → B → A → B: every start on the other host is refused, the generation chain strictly increases, the newest is the last running copy', async () => {
    const w = await newWorld();
    await start(w, w.a, at(0));
    const hosts = [w.a, w.b, w.a, w.b];
    let t = 1;
    let last = 0;
    for (let i = 1; i < hosts.length; i++) {
      const [src, dst] = [hosts[i - 1]!, hosts[i]!];
      await write(src, fill(10 + i));
      await receive(w, dst, at(t++), fill(10 + i));
      expect(await refusal(start(w, src, at(t++)))).toMatch(/being handed over/);
      const r = await stop(src, at(t++), '-');
      expect(r.handedOverTo).toMatch(new RegExp(`^${dst.name} `));
      if (r.action === 'archived') {
        expect(r.generation).toBeGreaterThan(last);
        last = r.generation;
      }
      for (const other of [src, w.c]) expect(await refusal(start(w, other, at(t++)))).toMatch(new RegExp(`claimed by host ${dst.name} `));
    }
    await write(w.b, fill(99));
    const end = await stop(w.b, at(t++), '-');
    expect(end).toMatchObject({ action: 'archived', kind: 'archive' });
    const metas = await w.a.archive.list(UUID);
    expect(metas.map((m) => m.kind)).toEqual(metas.map(() => 'archive'));
    expect(metas.at(-1)?.sha256).toBe(sha256(fill(99)));
    expect(await fs.readdir(w.dir)).not.toContain('incoming.json');
    expect(path.basename(w.dir)).toBe(UUID);
  });
});
