/**
 * Predict's size as stack params: memory and ephemeral storage reach the packaged functions, and
 * the default MAAS_MAX_MODEL_BYTES is exactly the biggest model the default predict can hold
 * (by the session cache's own estimate), so registration never accepts what predict must refuse.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { estimateSessionBytes } from '../../shared/inference';
import type { ModelVersion } from '../../shared/registry';
import { functionLogicalId, type PackageResult, packageService } from './package';

const MIB = 1024 * 1024;
type Props = {
  MemorySize?: number;
  EphemeralStorage?: { Size: number };
  Environment?: { Variables: Record<string, string> };
};

let defaults: PackageResult;
let sized: PackageResult;
beforeAll(async () => {
  [defaults, sized] = await Promise.all([
    packageService(),
    packageService({
      predictMemoryMb: '10240',
      predictEphemeralStorageMb: '10240',
      maxModelBytes: '7000000000',
    }),
  ]);
}, 600_000);
afterAll(() => {
  defaults?.cleanup();
  sized?.cleanup();
});

const props = (pkg: PackageResult, fn: string): Props =>
  pkg.template.Resources[functionLogicalId(fn)]!.Properties as unknown as Props;

describe('predict memory and /tmp as stack params', () => {
  it('defaults: 2048 MB of memory and of /tmp; predictAsync gets the same /tmp', () => {
    expect(props(defaults, 'predict').MemorySize).toBe(2048);
    expect(props(defaults, 'predict').EphemeralStorage).toEqual({ Size: 2048 });
    expect(props(defaults, 'predictAsync').EphemeralStorage).toEqual({ Size: 2048 });
  });

  it('params size predict, and MAAS_MAX_MODEL_BYTES follows maxModelBytes on every function', () => {
    expect(props(sized, 'predict').MemorySize).toBe(10240);
    expect(props(sized, 'predict').EphemeralStorage).toEqual({ Size: 10240 });
    for (const fn of ['predict', 'registerVersion', 'catalog'])
      expect(props(sized, fn).Environment?.Variables.MAAS_MAX_MODEL_BYTES).toBe('7000000000');
  });

  it('the default MAAS_MAX_MODEL_BYTES is the biggest model the default predict can hold', () => {
    const max = Number(props(defaults, 'predict').Environment?.Variables.MAAS_MAX_MODEL_BYTES);
    expect(props(defaults, 'registerVersion').Environment?.Variables.MAAS_MAX_MODEL_BYTES).toBe(String(max));
    const available = 2048 * MIB - 384 * MIB; // memory − MAAS_PREDICT_RESERVED_MB's default
    // Worst case: every byte an initializer.
    const model = (size: number): ModelVersion =>
      ({ size, onnx: { initializerBytes: size } }) as unknown as ModelVersion;
    const session = { smallModelBytes: 4 * MIB };
    expect(estimateSessionBytes(model(max), session)).toBeLessThanOrEqual(available);
    expect(estimateSessionBytes(model(max + 1024), session)).toBeGreaterThan(available);
    // And its files fit the default /tmp with the cache's reserve (64 MiB) to spare.
    expect(max).toBeLessThan(2048 * MIB - 64 * MIB);
  });
});
