/**
 * The upload settings of the register-version function, read through `shared/settings.ts` (an
 * invalid value is a misconfiguration, answered with 500 by every route).
 */
import { getNumberFromEnv, getStringFromEnv } from '../../shared/settings';

/** Seconds an upload ticket stays valid (`MAAS_UPLOAD_EXPIRES_SECONDS`, default 900). */
export const uploadExpiry = (): number =>
  getNumberFromEnv({
    key: 'MAAS_UPLOAD_EXPIRES_SECONDS',
    defaultValue: 900,
    min: 1,
    max: 604800,
    integer: true,
  });

/** Upload sessions: lifetime (`MAAS_UPLOAD_SESSION_EXPIRES_SECONDS`) and default part size (`MAAS_UPLOAD_PART_BYTES`). */
export const sessionSettings = (): { expiresInSeconds: number; partBytes: number } => ({
  expiresInSeconds: getNumberFromEnv({
    key: 'MAAS_UPLOAD_SESSION_EXPIRES_SECONDS',
    defaultValue: 3600,
    min: 1,
    // The bucket's lifecycle aborts multipart uploads a day after they began.
    max: 86400,
    integer: true,
  }),
  partBytes: getNumberFromEnv({
    key: 'MAAS_UPLOAD_PART_BYTES',
    defaultValue: 64 * 1024 * 1024,
    min: 5 * 1024 * 1024,
    max: 5 * 1024 * 1024 * 1024,
    integer: true,
  }),
});

/**
 * `MAAS_LOCAL_UPLOAD_URL`: the local upload server `npm start` runs beside the API (set by
 * plugins/local-dev.js); file-store tickets point there, past the emulated gateway's body limit.
 */
export const localUploadUrl = (): string | undefined =>
  getStringFromEnv({
    key: 'MAAS_LOCAL_UPLOAD_URL',
    defaultValue: undefined,
    pattern: /^https?:\/\/[^/?#]+\/?$/,
    expected: 'an http(s) origin such as http://127.0.0.1:3003',
  });
