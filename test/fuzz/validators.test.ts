/**
 * Property-based fuzzing of the name and key validators: model names, aliases and version
 * numbers from clients are accepted or refused with a typed 400, never a 500; every name and
 * alias they accept makes store keys the stores accept (so accepted input cannot fail later as
 * an internal key error); and the key check itself only ever throws its typed error.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { httpStatusOf, MaasError } from '../../shared/errors';
import { layout } from '../../shared/registry/layout';
import { assertAliasName, assertModelName, parseVersionNumber } from '../../shared/registry/names';
import { assertValidKey, StoreError } from '../../shared/store/object-store';
import { budget } from './budget';

/** Strings near the rules: ASCII names, separators, dots, unicode, control characters, long ones. */
const nameLike = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.stringMatching(/^[a-zA-Z0-9._\-/ ]{0,70}$/),
  fc.constantFrom(
    '',
    '.',
    '..',
    'a/b',
    'a..b',
    '-a',
    'a-',
    'A',
    'x'.repeat(64),
    'x'.repeat(65),
    'é',
    'a\u0000b',
    'a%2Fb',
  ),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);
const anyInput = fc.oneof(
  nameLike,
  fc.integer(),
  fc.double(),
  fc.constantFrom(null, undefined, true, [], {}),
);

function status(f: () => unknown): number {
  try {
    f();
    return 200;
  } catch (e) {
    if (!(e instanceof MaasError)) throw e;
    return httpStatusOf(e);
  }
}

describe('name validators (fuzzed)', () => {
  it('model names: accepted or a 400; accepted ones make valid keys', () => {
    fc.assert(
      fc.property(anyInput, (name) => {
        const s = status(() => assertModelName(name));
        expect([200, 400]).toContain(s);
        if (s === 200) {
          assertValidKey(layout.head(name as string));
          assertValidKey(layout.version(name as string, 1));
          assertValidKey(layout.shaIndex(name as string, 'a'.repeat(64)));
        }
      }),
      budget(3000),
    );
  });

  it('aliases: accepted or a 400; accepted ones make valid keys with any accepted model name', () => {
    fc.assert(
      fc.property(anyInput, (alias) => {
        const s = status(() => assertAliasName(alias));
        expect([200, 400]).toContain(s);
        if (s === 200) assertValidKey(layout.alias('m', alias as string));
      }),
      budget(3000),
    );
  });

  it('version numbers: a positive safe integer or a 400', () => {
    fc.assert(
      fc.property(fc.oneof(anyInput, fc.integer().map(String), fc.bigInt().map(String)), (v) => {
        const s = status(() => parseVersionNumber(v));
        expect([200, 400]).toContain(s);
        if (s === 200) {
          const n = parseVersionNumber(v);
          expect(Number.isSafeInteger(n) && n > 0).toBe(true);
        }
      }),
      budget(3000),
    );
  });
});

describe('store key validator (fuzzed)', () => {
  it('accepts a key or throws its typed StoreError, nothing else', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          nameLike,
          fc.array(nameLike, { maxLength: 4 }).map((p) => p.join('/')),
        ),
        (key) => {
          try {
            assertValidKey(key);
          } catch (e) {
            expect(e).toBeInstanceOf(StoreError);
          }
        },
      ),
      budget(3000),
    );
  });
});
