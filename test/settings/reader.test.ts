/** The settings reader (shared/settings.ts): typed reads, defaults, bounds, and every problem collected. */
import { describe, expect, it } from 'vitest';
import {
  getBooleanFromEnv,
  getNumberFromEnv,
  MisconfiguredError,
  readSettings,
  SettingsReader,
} from '../../shared/settings';

describe('SettingsReader', () => {
  it('returns defaults for unset or blank settings and parses set ones', () => {
    const r = new SettingsReader({ A: ' 12 ', B: '', C: 'Off', D: 'Basic', E: ' s3://b/p ' });
    expect(r.getNumberFromEnv({ key: 'A', defaultValue: 1, min: 0, integer: true })).toBe(12);
    expect(r.getNumberFromEnv({ key: 'B', defaultValue: 7 })).toBe(7);
    expect(r.getNumberFromEnv({ key: 'UNSET', defaultValue: 0.5 })).toBe(0.5);
    expect(r.getBooleanFromEnv({ key: 'C', defaultValue: true })).toBe(false);
    expect(r.getBooleanFromEnv({ key: 'UNSET', defaultValue: true })).toBe(true);
    expect(r.getEnumFromEnv({ key: 'D', values: ['basic', 'all'] as const, defaultValue: 'all' })).toBe(
      'basic',
    );
    expect(r.getStringFromEnv({ key: 'E', defaultValue: 'file://x', pattern: /^s3:\/\// })).toBe('s3://b/p');
    expect(r.getStringFromEnv({ key: 'UNSET', defaultValue: undefined })).toBeUndefined();
    expect(r.problems).toEqual([]);
    expect(() => r.check()).not.toThrow();
  });

  it('never turns a typo into NaN or the default silently: every problem is collected and thrown once', () => {
    const r = new SettingsReader({
      N: 'sixty',
      F: '2.5',
      LOW: '-1',
      HIGH: '2',
      BOOL: 'maybe',
      LEVEL: 'max',
      URL: 'bucket',
    });
    // Invalid values read as the default so that reading can go on…
    expect(r.getNumberFromEnv({ key: 'N', defaultValue: 60 })).toBe(60);
    expect(r.getNumberFromEnv({ key: 'F', defaultValue: 1, integer: true })).toBe(1);
    r.getNumberFromEnv({ key: 'LOW', defaultValue: 0, min: 0 });
    r.getNumberFromEnv({ key: 'HIGH', defaultValue: 0, min: 0, max: 1 });
    r.getBooleanFromEnv({ key: 'BOOL', defaultValue: true });
    r.getEnumFromEnv({ key: 'LEVEL', values: ['basic', 'all'], defaultValue: 'all' });
    r.getStringFromEnv({ key: 'URL', defaultValue: '', pattern: /^s3:\/\//, expected: 's3://bucket' });
    // …and check() names all of them, with their values and what was expected.
    expect(r.problems.map((p) => p.setting)).toEqual(['N', 'F', 'LOW', 'HIGH', 'BOOL', 'LEVEL', 'URL']);
    expect(r.problems[0]).toEqual({ setting: 'N', value: 'sixty', expected: 'a number' });
    expect(r.problems[1]!.expected).toBe('an integer');
    expect(r.problems[2]!.expected).toBe('a number ≥ 0');
    expect(r.problems[3]!.expected).toBe('a number between 0 and 1');
    expect(r.problems[5]!.expected).toBe('basic or all');
    expect(r.problems[6]!.expected).toBe('s3://bucket');
    let thrown: unknown;
    try {
      r.check();
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(MisconfiguredError);
    const error = thrown as MisconfiguredError;
    expect(error.kind).toBe('internal');
    expect(error.settings).toEqual(['N', 'F', 'LOW', 'HIGH', 'BOOL', 'LEVEL', 'URL']);
    expect(error.message).toContain('N must be a number, got "sixty"');
    expect(error.details).toEqual({ settings: error.settings });
  });

  it('readSettings and the one-off readers throw MisconfiguredError', () => {
    expect(readSettings((r) => r.getNumberFromEnv({ key: 'X', defaultValue: 3 }), { X: '4' })).toBe(4);
    expect(() =>
      readSettings((r) => r.getNumberFromEnv({ key: 'X', defaultValue: 3 }), { X: 'NaN' }),
    ).toThrow(MisconfiguredError);
    expect(getNumberFromEnv({ key: 'X', defaultValue: 3, max: 10 }, {})).toBe(3);
    expect(() => getNumberFromEnv({ key: 'X', defaultValue: 3, max: 10 }, { X: '11' })).toThrow(
      /X must be a number ≤ 10/,
    );
    expect(getBooleanFromEnv({ key: 'Y', defaultValue: false }, { Y: 'YES' })).toBe(true);
    expect(() => getBooleanFromEnv({ key: 'Y', defaultValue: false }, { Y: 'ja' })).toThrow(
      MisconfiguredError,
    );
  });
});
