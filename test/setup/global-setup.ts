// Vitest globalSetup: make an S3 endpoint available to every test worker.
//
// * If S3_ENDPOINT is already set, it is used as is, together with
//   S3_ACCESS_KEY / S3_SECRET_KEY / S3_REGION (region defaults to us-east-1).
// * Otherwise a throw-away single-node Ceph RADOS Gateway is started with
//   `scripts/rgw-up.sh .maas-test/rgw` (installs the Debian packages on first
//   use when running as root; ~13 s when installed) and stopped again with
//   rgw-down.sh on teardown, but only if a test run started it.
//
//   Several vitest runs in one checkout (watch mode plus a one-off run, or
//   several engineers/agents) share that instance instead of fighting over it:
//   each run takes a lease (RGW_LEASE_PID=<our pid>; rgw-up.sh records it under
//   an flock) and gives it back on teardown (`rgw-down.sh DIR --release <pid>`,
//   which stops and purges, like --purge, only when no other live run holds a
//   lease and the instance was started by a test run). An instance a developer
//   started by hand (`scripts/rgw-up.sh .maas-test/rgw`, to skip the start-up
//   time on every run) is reused and left running. An instance left behind by
//   a run killed without teardown is reused and stopped by the next run.
//   RGW_PORT=auto: 7480, or a free port if a developer's own RGW has 7480;
//   set RGW_PORT to force one.
//
// How the settings reach the tests: via process.env. globalSetup runs in the
// main vitest process before any test worker exists, and vitest 4 starts each
// worker (pool 'forks') with `env: { ...process.env, ...test.env }`, built per
// run after globalSetup has finished, so whatever is assigned to process.env
// here is inherited (test/store/rgw-smoke.test.ts checks MAAS_TEST_S3 and
// S3_ENDPOINT). That matters for the code under test too, which reads S3_*
// from its environment itself, so provide()/inject() alone would not do.
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

const DATA_DIR_REL = '.maas-test/rgw';
const S3_VARS = ['S3_ENDPOINT', 'S3_ACCESS_KEY', 'S3_SECRET_KEY', 'S3_REGION'] as const;

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  process.env.MAAS_TEST_S3 = '1';

  if (process.env.S3_ENDPOINT) {
    process.env.S3_REGION ||= 'us-east-1';
    const missing = S3_VARS.filter((v) => !process.env[v]);
    if (missing.length) throw new Error(`S3_ENDPOINT is set but ${missing.join(', ')} is not`);
    log(`using S3 endpoint from the environment: ${process.env.S3_ENDPOINT}`);
    return undefined;
  }

  const root = project.config.root; // where vitest.config.ts lives: the repo root
  const dataDir = path.join(root, DATA_DIR_REL);
  const up = path.join(root, 'scripts/rgw-up.sh');
  const down = path.join(root, 'scripts/rgw-down.sh');

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    RGW_PORT: process.env.RGW_PORT || 'auto',
    RGW_LEASE_PID: String(process.pid),
  };
  // The instance's credentials are rgw-up.sh's fixed test defaults, not
  // whatever S3_ACCESS_KEY/S3_SECRET_KEY a developer has in their shell
  // (different credentials would make rgw-up.sh rebuild a shared instance).
  delete env.S3_ACCESS_KEY;
  delete env.S3_SECRET_KEY;

  const t0 = Date.now();
  const stdout = await run(up, [dataDir], env);
  const vars = parseEnv(stdout);
  const missing = S3_VARS.filter((v) => !vars[v]);
  if (missing.length) throw new Error(`rgw-up.sh printed no ${missing.join(', ')}; output was:\n${stdout}`);
  for (const v of S3_VARS) process.env[v] = vars[v];
  log(`RGW at ${vars.S3_ENDPOINT} ready in ${Date.now() - t0} ms (data in ${DATA_DIR_REL})`);

  return async () => {
    const t1 = Date.now();
    const out = await run(down, [dataDir, '--release', String(process.pid)], process.env);
    log(`released RGW (${Date.now() - t1} ms): ${out.trim().replace(/\n/g, '; ')}`);
  };
}

function log(msg: string): void {
  process.stderr.write(`[global-setup] ${msg}\n`);
}

/** Runs a script; its stderr (progress) goes to ours, its stdout is returned. Rejects on non-zero exit. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve(out);
      else
        reject(
          new Error(
            `${path.basename(cmd)} ${args.join(' ')} failed (${signal ?? `exit ${code}`}); see its messages above`,
          ),
        );
    });
  });
}

function parseEnv(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) vars[m[1]!] = m[2]!;
  }
  return vars;
}
