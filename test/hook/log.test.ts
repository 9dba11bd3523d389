/**
 * The hook's journal lines (src/hook/log.ts) against a stand-in for journald's stream socket: the
 * header sd_journal_stream_fd() writes, one line per message, and flushLog, after which the hook
 * may exit at once (hooks/qemu.ts calls process.exit) without losing a line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { flushLog, makeLogger } from '../../src/hook/log';

const dirs: string[] = [];
const servers: Server[] = [];
afterEach(() => {
  servers.splice(0).forEach((s) => s.close());
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
});

/** A journald stream socket stand-in: `received` gets each connection's full text. */
async function journal(): Promise<{ socket: string; received: string[] }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ovmfhook-journal-'));
  dirs.push(dir);
  const socket = path.join(dir, 'stdout');
  const received: string[] = [];
  const server = createServer((c) => {
    let text = '';
    c.on('data', (d) => (text += d.toString()));
    c.on('end', () => received.push(text));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(socket, r));
  return { socket, received };
}

describe('journal lines', () => {
  it('each message is one connection with the sd_journal_stream_fd header, priority by level', async () => {
    const j = await journal();
    const log = makeLogger({ vm: 'vm1', journalSocket: j.socket, syslogSocket: '/nonexistent' });
    log('err', 'archive failed');
    log('info', 'two\nlines');
    await flushLog();
    await vi.waitFor(() => expect(j.received).toHaveLength(2));
    expect(j.received.sort()).toEqual(['ovmf-hook\n\n3\n0\n0\n0\n0\nvm1: archive failed\n', 'ovmf-hook\n\n6\n0\n0\n0\n0\nvm1: two\\x0alines\n'].sort());
  });

  it('flushLog resolves only once every line is handed over, then at once', async () => {
    const j = await journal();
    const log = makeLogger({ journalSocket: j.socket, syslogSocket: '/nonexistent' });
    log('warning', 'one');
    log('warning', 'two');
    let flushed = false;
    const f = flushLog().then(() => (flushed = true));
    await Promise.resolve();
    expect(flushed).toBe(false); // the sockets are still connecting
    await f;
    // handed over: the lines reach the server even though nothing of ours waits for it any more
    await vi.waitFor(() => expect(j.received).toHaveLength(2));
    let again = false;
    void flushLog().then(() => (again = true));
    await Promise.resolve();
    await Promise.resolve();
    expect(again).toBe(true);
  });

  it('no journald (no socket) and no syslog: nothing to wait for', async () => {
    const log = makeLogger({ journalSocket: '/nonexistent/stdout', syslogSocket: '/nonexistent/log' });
    log('info', 'lost');
    let flushed = false;
    void flushLog().then(() => (flushed = true));
    await Promise.resolve();
    await Promise.resolve();
    expect(flushed).toBe(true);
  });
});
