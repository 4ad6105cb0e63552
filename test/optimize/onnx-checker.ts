/**
 * onnx's own model checker (`onnx.checker.check_model`, Debian's python3-onnx) on bytes maas
 * wrote: an independent validator, not our own reader. Installed with apt when missing (the test
 * machines run as root, as CI does); .ci/run installs it up front.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

/** Debian's interpreter: the one python3-onnx installs into (a pyenv `python3` on PATH may lack it). */
const PYTHON = '/usr/bin/python3';

function hasOnnx(): boolean {
  return spawnSync(PYTHON, ['-c', 'import onnx'], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes sure `import onnx` works, installing python3-onnx with apt-get when it does not.
 * @example
 * beforeAll(() => ensureOnnxChecker(), 300_000);
 */
export function ensureOnnxChecker(): void {
  if (hasOnnx()) return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): boolean =>
    spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'python3-onnx'], {
      env,
      stdio: 'ignore',
    }).status === 0;
  if (!install()) {
    execFileSync('apt-get', ['update', '-qq'], { env, stdio: 'ignore' });
    if (!install()) throw new Error('python3-onnx is not installed and apt-get could not install it');
  }
  if (!hasOnnx()) throw new Error(`${PYTHON} still cannot import onnx after installing python3-onnx`);
}

/**
 * Runs onnx.checker.check_model on the bytes; returns '' when valid, else the checker's message.
 * @example
 * expect(onnxCheckerErrors(candidate.bytes)).toBe('');
 */
export function onnxCheckerErrors(bytes: Uint8Array): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'maas-onnx-check-'));
  try {
    const file = path.join(dir, 'model.onnx');
    writeFileSync(file, bytes);
    const r = spawnSync(
      PYTHON,
      ['-c', 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]))', file],
      {
        encoding: 'utf8',
      },
    );
    return r.status === 0 ? '' : (r.stderr.trim().split('\n').at(-1) ?? `exit ${r.status}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
