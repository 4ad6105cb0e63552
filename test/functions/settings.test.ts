/**
 * The settings policy in the management functions, through the real handlers behind the test
 * gateway: an invalid shared setting (`MAAS_STORE`, `MAAS_MAX_MODEL_BYTES`) makes every route
 * answer 500 `misconfigured` naming the setting (not its value), nothing is written, and the
 * functions serve again once it is fixed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyModel } from '../support/models';
import { octet, type TestApi, useTestApi } from './runtime';

let api: TestApi;
let goodStore: string;

beforeAll(async () => {
  api = await useTestApi('file', 'settings');
  goodStore = process.env.MAAS_STORE!;
});
afterAll(async () => api?.cleanup());

describe('a misconfigured management function', () => {
  it.each([
    ['MAAS_STORE', 'my-models-bucket'],
    ['MAAS_MAX_MODEL_BYTES', '1e99x'],
  ])('%s=%s: every route answers 500 misconfigured, nothing is written', async (setting, value) => {
    api.reset({ [setting]: value });
    try {
      const responses = [
        await api.call('GET', '/models'),
        await api.call('POST', '/models/cfg/versions', { headers: octet, body: Buffer.from(tinyModel(1)) }),
        await api.call('PUT', '/models/cfg/aliases/production', { body: { version: 1 } }),
      ];
      for (const res of responses) {
        expect(res.status).toBe(500);
        const body = res.json<{ error: string; code: string; details: { settings: string[] } }>();
        expect(body.code).toBe('misconfigured');
        expect(body.error).toContain(setting);
        expect(body.details.settings).toEqual([setting]);
        expect(res.body.toString()).not.toContain(value);
      }
    } finally {
      api.reset({ [setting]: setting === 'MAAS_STORE' ? goodStore : undefined });
    }
    // Fixed: serving again, and the refused registration left nothing behind.
    const listing = await api.call('GET', '/models');
    expect(listing.status).toBe(200);
    expect(listing.json<{ items: unknown[] }>().items).toEqual([]);
  });
});
