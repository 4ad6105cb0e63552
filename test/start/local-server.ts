import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/** The repository root. */
export const ROOT = path.resolve(__dirname, '../..');

/** A free TCP port on loopback (bind to 0, read it, release it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A throw-away copy of the service: the sources are symlinked, serverless.yml is copied (osls
 * does not accept a symlinked one), and `.maas/`, `.esbuild/`, `.serverless/` and downloaded files land in the
 * copy, so tests never touch the working tree's store and concurrent runs never collide.
 */
export function serviceCopy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'maas-start-'));
  for (const entry of [
    'node_modules',
    'shared',
    'functions',
    'plugins',
    'scripts',
    'layers',
    'ui',
    'package.json',
    'package-lock.json',
    'tsconfig.json',
  ]) {
    if (fs.existsSync(path.join(ROOT, entry))) fs.symlinkSync(path.join(ROOT, entry), path.join(dir, entry));
  }
  fs.copyFileSync(path.join(ROOT, 'serverless.yml'), path.join(dir, 'serverless.yml'));
  return dir;
}

/** The environment of a child: ours minus every AWS credential and S3 endpoint (none are needed). */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env))
    if (/^(AWS_|S3_)/.test(k) && k !== 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED') delete env[k];
  return { ...env, ...extra };
}

/** `npm start` running in its own process group, with its output collected. */
export class LocalServer {
  output = '';
  private exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString('utf8')));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString('utf8')));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** Starts `npm start` in `cwd` (detached: a process group we can kill as a whole). */
  static start(cwd: string, env: NodeJS.ProcessEnv): LocalServer {
    return new LocalServer(
      spawn('npm', ['start'], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] }),
    );
  }

  /** Resolves once `url` answers 200, or throws with the server's output after `timeoutMs`. */
  async waitUntilReady(url: string, timeoutMs: number): Promise<number> {
    const started = Date.now();
    let exitCode: number | null | undefined;
    void this.exited.then((c) => (exitCode = c));
    while (Date.now() - started < timeoutMs) {
      if (exitCode !== undefined) throw new Error(`npm start exited with ${exitCode}:\n${this.output}`);
      const ok = await fetch(url).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return Date.now() - started;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`not ready after ${timeoutMs} ms:\n${this.output}`);
  }

  /** Waits until the output matches `pattern`. */
  async waitForOutput(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const started = Date.now();
    for (;;) {
      const m = this.output.match(pattern);
      if (m) return m;
      if (Date.now() - started > timeoutMs)
        throw new Error(`output never matched ${pattern}:\n${this.output.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** SIGINT to the whole group (serverless-offline shuts down cleanly), SIGKILL if it lingers. */
  async stop(): Promise<void> {
    const pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return;
    const signal = (s: NodeJS.Signals): void => {
      try {
        process.kill(-pid, s);
      } catch {
        /* group already gone */
      }
    };
    signal('SIGINT');
    const done = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
    ]);
    // npm may exit before its children: always make sure the group is gone.
    signal('SIGKILL');
    if (!done) await this.exited;
  }
}

/** Runs a README block with bash (-euo pipefail) in `cwd`; resolves with its exit code and output. */
export function runShell(
  code: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-euo', 'pipefail', '-c', code], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out after ${timeoutMs} ms: ${code}\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
