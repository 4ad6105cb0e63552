/**
 * Whether `npm start` may listen where it was asked to. Only the front server (the API on
 * MAAS_PORT) and the upload server (token-checked) bind MAAS_HOST; serverless-offline, with its
 * unauthenticated Lambda invoke endpoint (`lambdaPort`, 3002: anyone who reaches it can invoke
 * every function directly, bypassing the API key), stays on 127.0.0.1 behind the front server.
 * Still, a non-loopback host puts every mutating route on the network, so it is refused unless
 * the API is at least key-protected, and even then the operator is told plainly what is open.
 */
import { isIP } from 'node:net';

/** What {@link exposureCheck} decided. */
export interface ExposureDecision {
  /** True when every listener is on loopback. */
  loopback: boolean;
  /** Set when starting must be refused: the message says why and how to proceed. */
  refusal?: string;
  /** Lines to print prominently before serving (empty on loopback). */
  warnings: string[];
}

/**
 * True for hosts that only this machine can reach: `localhost`, `127.0.0.0/8`, `::1`
 * (and IPv4-mapped `::ffff:127.x`). Wildcards (`0.0.0.0`, `::`) and every other address are not.
 *
 * @example
 * ```ts
 * isLoopbackHost('127.0.0.1'); // true
 * isLoopbackHost('0.0.0.0'); // false
 * ```
 */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const v4 = /^(?:::ffff:)?(\d+\.\d+\.\d+\.\d+)$/.exec(h)?.[1];
  if (v4 && isIP(v4) === 4) return v4.startsWith('127.');
  return isIP(h) === 6 && /^(0{0,4}:){2,7}0{0,3}1$|^::1$/.test(h);
}

/**
 * Decides whether the local server may bind `host` (the HTTP API and, unavoidably, the
 * unauthenticated Lambda invoke port): loopback always; anything else only with `MAAS_API_KEY`
 * set, and then with a warning naming the open Lambda port.
 *
 * @example
 * ```ts
 * const decision = exposureCheck('0.0.0.0', 3002, process.env);
 * if (decision.refusal) throw new Error(decision.refusal);
 * decision.warnings.forEach((line) => console.warn(line));
 * ```
 */
export function exposureCheck(host: string, lambdaPort: number, shell: NodeJS.ProcessEnv): ExposureDecision {
  if (isLoopbackHost(host)) return { loopback: true, warnings: [] };
  const lambdaInside = `serverless-offline and its unauthenticated Lambda invoke port (${lambdaPort}) stay on 127.0.0.1.`;
  if (!shell.MAAS_API_KEY) {
    return {
      loopback: false,
      refusal:
        `maas: refusing to listen on ${host}: MAAS_HOST is not a loopback address and MAAS_API_KEY is not set, so every mutating route would be open to the network. ` +
        `Set MAAS_API_KEY, or leave MAAS_HOST unset to listen on 127.0.0.1. (${lambdaInside})`,
      warnings: [],
    };
  }
  const rule = '!'.repeat(100);
  return {
    loopback: false,
    warnings: [
      rule,
      `maas: WARNING: listening on ${host}, reachable from other machines. Mutating routes require MAAS_API_KEY;`,
      'maas: WARNING: predict and generate routes are open to anyone who reaches this port (as on a stack with predictAuth=none).',
      `maas: WARNING: ${lambdaInside} Prefer MAAS_HOST=127.0.0.1 behind an authenticating proxy.`,
      rule,
    ],
  };
}
