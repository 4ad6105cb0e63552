/**
 * A small HTTP proxy for fault injection between maas and its S3 server (the shared RGW): it
 * forwards every request as is (SigV4 signatures stay valid: the Host header is kept) and, for
 * the requests a rule or the seeded chaos mode picks, answers `503 SlowDown` itself, resets the
 * connection before or after S3 applied the request (a lost reply), resets it in the middle of
 * the response body, or stalls before forwarding.
 *
 * @example
 * ```ts
 * const proxy = await startFaultProxy(process.env.S3_ENDPOINT!);
 * proxy.inject({ method: 'PUT', path: /head\.json$/, action: 'reset-after' }); // once
 * const store = new S3ObjectStore({ bucket, endpoint: proxy.endpoint, forcePathStyle: true, ... });
 * ```
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mulberry32 } from '../../shared/util/random';

/**
 * - `slowdown`: answer `503 SlowDown` (S3's throttling reply) without forwarding;
 * - `reset-before`: close the connection without forwarding (S3 never sees the request);
 * - `reset-after`: forward, let S3 apply it, then close the connection instead of answering;
 * - `reset-mid-body`: forward, send the status, headers and half the body, then close;
 * - `stall`: hold the request `stallMs` before forwarding it (clients with a timeout give up).
 */
export type FaultAction = 'slowdown' | 'reset-before' | 'reset-after' | 'reset-mid-body' | 'stall';

export interface FaultRule {
  /** HTTP method to match (any when unset). */
  method?: string;
  /** Matched against the request path with its query string (any when unset). */
  path?: RegExp;
  action: FaultAction;
  /** How many matching requests get the fault (default 1). */
  times?: number;
  /** Runs before the fault is applied (e.g. another writer acting while this request is held). */
  before?: () => Promise<void>;
}

export interface ChaosOptions {
  /** Share of requests that get a fault, 0..1. */
  rate: number;
  /** Faults to draw from (default all but `stall`). */
  actions?: FaultAction[];
  /** PRNG seed, so a failing run can be replayed. */
  seed: number;
  /** Only requests matching this method/path get faults. */
  method?: string;
  path?: RegExp;
}

/** One request the proxy saw, and what it did with it. */
export interface ProxiedRequest {
  method: string;
  path: string;
  action: FaultAction | 'pass';
  /** Status S3 (or the proxy) answered, when an answer was sent. */
  status?: number;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: use it as the S3 endpoint. */
  endpoint: string;
  /** Adds a rule; rules are tried in order and the first that matches (with faults left) applies. */
  inject(rule: FaultRule): void;
  /** Faults on a seeded random share of requests until {@link calm}. */
  chaos(options: ChaosOptions): void;
  /** Removes every rule and stops chaos: everything passes from now on. */
  calm(): void;
  /** Every request so far. */
  readonly log: ProxiedRequest[];
  /** Faults applied so far. */
  faults(): number;
  stallMs: number;
  close(): Promise<void>;
}

const SLOW_DOWN =
  '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>' +
  '<Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>';

/** Starts a proxy on 127.0.0.1 (a free port) in front of `upstream` (e.g. `http://127.0.0.1:7480`). */
export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const rules: { rule: FaultRule; left: number }[] = [];
  let chaos: (ChaosOptions & { rand: () => number }) | undefined;
  const log: ProxiedRequest[] = [];

  const pick = (method: string, path: string): { action: FaultAction | 'pass'; rule?: FaultRule } => {
    const matches = (m?: string, p?: RegExp): boolean =>
      (m === undefined || m === method) && (p === undefined || p.test(path));
    for (const entry of rules) {
      if (entry.left > 0 && matches(entry.rule.method, entry.rule.path)) {
        entry.left--;
        return { action: entry.rule.action, rule: entry.rule };
      }
    }
    if (chaos && matches(chaos.method, chaos.path) && chaos.rand() < chaos.rate) {
      const actions = chaos.actions ?? ['slowdown', 'reset-before', 'reset-after', 'reset-mid-body'];
      return { action: actions[Math.floor(chaos.rand() * actions.length)] ?? 'slowdown' };
    }
    return { action: 'pass' };
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const method = req.method ?? 'GET';
      const path = req.url ?? '/';
      const { action, rule } = pick(method, path);
      const entry: ProxiedRequest = { method, path, action };
      log.push(entry);
      void (async () => {
        if (rule?.before) await rule.before();
        if (action === 'slowdown') {
          entry.status = 503;
          res.writeHead(503, {
            'content-type': 'application/xml',
            'content-length': Buffer.byteLength(SLOW_DOWN),
          });
          res.end(SLOW_DOWN);
          return;
        }
        if (action === 'reset-before') {
          req.socket.destroy();
          return;
        }
        if (action === 'stall') await new Promise((r) => setTimeout(r, proxy.stallMs));
        const headers = { ...req.headers };
        delete headers.expect; // the body is sent at once
        const upstreamReq = http.request(
          { host: target.hostname, port: target.port, method, path, headers, agent },
          (up) => {
            const body: Buffer[] = [];
            up.on('data', (c: Buffer) => body.push(c));
            up.on('end', () => {
              const bytes = Buffer.concat(body);
              entry.status = up.statusCode;
              if (action === 'reset-after') {
                req.socket.destroy();
                return;
              }
              res.writeHead(up.statusCode ?? 502, up.headers);
              if (action === 'reset-mid-body') {
                res.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
                // Let the partial body reach the client before the reset.
                setTimeout(() => req.socket.destroy(), 5);
                return;
              }
              res.end(bytes);
            });
            up.on('error', () => req.socket.destroy());
          },
        );
        upstreamReq.on('error', () => req.socket.destroy());
        upstreamReq.end(Buffer.concat(chunks));
      })().catch(() => req.socket.destroy());
    });
  });
  // A client that gave up (stall) or a reset socket must not crash the test process.
  server.on('clientError', (_, socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const proxy: FaultProxy = {
    endpoint: `http://127.0.0.1:${port}`,
    stallMs: 5_000,
    log,
    inject(rule) {
      rules.push({ rule, left: rule.times ?? 1 });
    },
    chaos(options) {
      chaos = { ...options, rand: mulberry32(options.seed) };
    },
    calm() {
      rules.length = 0;
      chaos = undefined;
    },
    faults: () => log.filter((r) => r.action !== 'pass').length,
    async close() {
      proxy.calm();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
  return proxy;
}
