/**
 * `npm start` on a non-loopback host: the front server puts every mutating route on the network
 * (serverless-offline and its unauthenticated Lambda invoke port stay on 127.0.0.1), so the local
 * server refuses to be exposed without MAAS_API_KEY and warns loudly with it.
 */
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { exposureCheck, isLoopbackHost } from '../../scripts/local-dev';
import { childEnv, freePort, LocalServer, serviceCopy } from './local-server';

describe('exposureCheck', () => {
  it('tells loopback hosts from everything else', () => {
    for (const h of [
      '127.0.0.1',
      '127.3.2.1',
      'localhost',
      '::1',
      '[::1]',
      '0:0:0:0:0:0:0:1',
      '::ffff:127.0.0.1',
    ])
      expect(isLoopbackHost(h), h).toBe(true);
    for (const h of [
      '0.0.0.0',
      '::',
      '192.168.1.5',
      '10.0.0.1',
      '::ffff:10.0.0.1',
      'example.com',
      '128.0.0.1',
      'fe80::1',
      '',
    ])
      expect(isLoopbackHost(h), h).toBe(false);
  });

  it('allows loopback silently, refuses a non-loopback host without MAAS_API_KEY, and warns about what is open with one', () => {
    expect(exposureCheck('127.0.0.1', 3002, {})).toEqual({ loopback: true, warnings: [] });
    const refused = exposureCheck('0.0.0.0', 3002, { MAAS_API_KEY: '' });
    expect(refused.refusal).toMatch(/refusing to listen on 0\.0\.0\.0.*MAAS_API_KEY is not set/);
    expect(refused.refusal).toMatch(/Lambda invoke port \(3002\) stay on 127\.0\.0\.1/);
    const keyed = exposureCheck('192.168.1.5', 4002, { MAAS_API_KEY: 'k' });
    expect(keyed.refusal).toBeUndefined();
    expect(keyed.warnings.join('\n')).toMatch(/Mutating routes require MAAS_API_KEY/);
    expect(keyed.warnings.join('\n')).toMatch(/predict and generate routes are open/);
    expect(keyed.warnings.join('\n')).toMatch(/Lambda invoke port \(4002\) stay on 127\.0\.0\.1/);
  });
});

describe('npm start with MAAS_HOST=0.0.0.0 and no MAAS_API_KEY', () => {
  let dir: string | undefined;
  let server: LocalServer | undefined;
  afterAll(async () => {
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('exits non-zero before anything listens, saying why', async () => {
    dir = serviceCopy();
    const [httpPort, lambdaPort] = [await freePort(), await freePort()];
    const env = childEnv({
      MAAS_HOST: '0.0.0.0',
      MAAS_PORT: String(httpPort),
      MAAS_LAMBDA_PORT: String(lambdaPort),
      MAAS_API_KEY: '',
      MAAS_DEMO: 'false',
    });
    server = LocalServer.start(dir, env);
    const code = await new Promise<number | null>((resolve) => server!.child.once('exit', resolve));
    expect(code, server.output).not.toBe(0);
    expect(server.output).toContain('refusing to listen on 0.0.0.0');
    expect(server.output).not.toContain('maas: ready');
    for (const port of [httpPort, lambdaPort]) {
      expect(
        await fetch(`http://127.0.0.1:${port}/`).then(
          () => true,
          () => false,
        ),
        `port ${port}`,
      ).toBe(false);
    }
  }, 120_000);
});
