import { InvalidArgumentError } from '../errors';

/**
 * Model names: 1–64 characters of lower-case letters, digits, `-`, `_` and `.`, starting and
 * ending with a letter or digit. Safe unescaped in URL paths and S3 keys, and case-insensitive
 * file systems cannot confuse two of them.
 */
export const MODEL_NAME_PATTERN = /^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$/;

/**
 * Alias names: 1–32 characters of lower-case letters, digits, `-` and `_`, starting with a
 * letter, so an alias can never be mistaken for a version number. `latest` is reserved: it
 * always means the newest active version.
 */
export const ALIAS_NAME_PATTERN = /^[a-z][a-z0-9_-]{0,31}$/;
export const RESERVED_ALIASES: readonly string[] = ['latest'];

export function assertModelName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !MODEL_NAME_PATTERN.test(name) || name.includes('..')) {
    throw new InvalidArgumentError(
      `invalid model name ${JSON.stringify(name)}: use 1-64 of a-z 0-9 . _ -, starting and ending with a letter or digit`,
      { field: 'name' },
    );
  }
}

export function assertAliasName(alias: unknown): asserts alias is string {
  if (typeof alias !== 'string' || !ALIAS_NAME_PATTERN.test(alias)) {
    throw new InvalidArgumentError(
      `invalid alias ${JSON.stringify(alias)}: use 1-32 of a-z 0-9 _ -, starting with a letter`,
      { field: 'alias' },
    );
  }
  if (RESERVED_ALIASES.includes(alias))
    throw new InvalidArgumentError(`alias "${alias}" is reserved`, { field: 'alias' });
}

/** Versions are positive integers; accepts numbers and their decimal strings. */
export function parseVersionNumber(value: unknown): number {
  const n = typeof value === 'string' && /^[0-9]{1,9}$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > 999_999_999) {
    throw new InvalidArgumentError(`invalid version ${JSON.stringify(value)}: expected a positive integer`, {
      field: 'version',
    });
  }
  return n;
}
