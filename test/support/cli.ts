/**
 * Runs the real `maas` launcher (bin/maas.cjs through tsx, no build) as a user would: the CLI
 * tests' one way to call it.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';

export const MAAS_BIN = path.resolve(__dirname, '../../bin/maas.cjs');

export interface CliRun {
  /** Exit code; -1 when the process was killed (timeout). */
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** The environment to start from (default: the test's own). */
  baseEnv?: NodeJS.ProcessEnv;
  /** Added to it; `undefined` removes a variable. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Piped to stdin (then closed). */
  input?: string;
  /** Killed after this long (default 120 s). */
  timeoutMs?: number;
}

/**
 * Runs `maas ...args` and collects its output.
 *
 * @example
 * ```ts
 * const r = await runMaas(['register', 'iris', 'iris.onnx'], { env: { MAAS_ENDPOINT: url }, cwd: dir });
 * expect(r.code).toBe(0);
 * ```
 */
export function runMaas(args: string[], options: CliOptions = {}): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = { ...(options.baseEnv ?? process.env), ...options.env };
  for (const [k, v] of Object.entries(options.env ?? {})) if (v === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAAS_BIN, ...args], {
      env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill(), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}
