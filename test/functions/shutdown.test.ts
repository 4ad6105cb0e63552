import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { EXTENSION_NAME, onShutdown, registerInternalExtension } from '../../functions/lib/shutdown';
import { drainLocalHandlers } from '../../scripts/local-dev/drain';
import { sleep } from '../../shared/util/backoff';

describe('shutdown hooks', () => {
  it('on Lambda, registers an internal extension with the Extensions API (so the runtime gets SIGTERM) and polls for its events', async () => {
    const seen: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        if (req.url === '/2020-01-01/extension/register') {
          res.writeHead(200, {
            'lambda-extension-identifier': 'ext-123',
            'content-type': 'application/json',
          });
          res.end(JSON.stringify({ functionName: 'f', functionVersion: '$LATEST', handler: 'h' }));
        }
        // event/next: never answered while the container lives (the extension has no events).
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      registerInternalExtension(`127.0.0.1:${port}`);
      for (let i = 0; i < 50 && seen.length < 2; i++) await sleep(20);
      expect(seen[0]).toMatchObject({ method: 'POST', url: '/2020-01-01/extension/register' });
      expect(seen[0]!.headers['lambda-extension-name']).toBe(EXTENSION_NAME);
      expect(JSON.parse(seen[0]!.body)).toEqual({ events: [] });
      expect(seen[1]).toMatchObject({ method: 'GET', url: '/2020-01-01/extension/event/next' });
      expect(seen[1]!.headers['lambda-extension-identifier']).toBe('ext-123');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('under npm start, a drain request on the broadcast channel runs the hooks and waits for them', async () => {
    let flushed = 0;
    onShutdown(
      async () => {
        await sleep(200);
        flushed++;
      },
      { IS_OFFLINE: 'true' },
    );
    const result = await drainLocalHandlers({ ackMs: 100, timeoutMs: 5000 });
    expect(flushed).toBe(1);
    expect(result).toEqual({ drained: 1, timedOut: 0 });
  });
});
