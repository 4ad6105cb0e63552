/**
 * Exact int8 kernels (`MAAS_ORT_EXACT_INT8`): on x86 CPUs without VNNI onnxruntime's fast u8·s8
 * products sum pairs into int16 and saturate; the setting has every session maas serves or
 * evaluates with ask onnxruntime for its int32-accumulating u8·u8 kernels instead.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inferenceSettingsFromEnv, ortSessionOptions } from '../../shared/inference';
import { encodeModel } from '../../shared/onnx/codec';
import { makeGraph, makeModel, makeNode, makeTensor, makeValueInfo } from '../../shared/onnx/construct';
import { cpuSaturatesInt8 } from '../../shared/onnx/int8-precision';

const K = 64;
/** MatMulInteger of a uint8 row by an int8 column of 127s: with inputs of 255 each product pair
 *  is 2·255·127 = 64,770, twice what int16 holds, so a saturating kernel cannot get it right. */
const model = encodeModel(
  makeModel(
    makeGraph({
      nodes: [makeNode('MatMulInteger', ['a', 'b'], ['y'], {}, { name: 'mmi' })],
      inputs: [makeValueInfo('a', 'UINT8', [1, K])],
      outputs: [makeValueInfo('y', 'INT32', [1, 1])],
      initializers: [makeTensor('b', 'INT8', [K, 1], new Int8Array(K).fill(127))],
    }),
    { opset: 13 },
  ),
);
const EXACT = K * 255 * 127; // 2,072,640

const sessionOptions = (exact: string) =>
  ortSessionOptions(inferenceSettingsFromEnv({ MAAS_ORT_EXACT_INT8: exact }).session);

describe('exact int8 kernels', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'maas-int8-precision-'));
    await writeFile(join(dir, 'mmi.onnx'), model);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('MAAS_ORT_EXACT_INT8 defaults to whether this CPU saturates, and is refused when not a boolean', () => {
    expect(inferenceSettingsFromEnv({}).session.exactInt8).toBe(cpuSaturatesInt8());
    expect(inferenceSettingsFromEnv({ MAAS_ORT_EXACT_INT8: 'true' }).session.exactInt8).toBe(true);
    expect(inferenceSettingsFromEnv({ MAAS_ORT_EXACT_INT8: 'false' }).session.exactInt8).toBe(false);
    expect(() => inferenceSettingsFromEnv({ MAAS_ORT_EXACT_INT8: 'sometimes' })).toThrow(
      /MAAS_ORT_EXACT_INT8/,
    );
    expect(sessionOptions('true').extra).toEqual({ session: { x64quantprecision: '1' } });
    expect(sessionOptions('false').extra).toBeUndefined();
  });

  it('a session with exact int8 computes the product a saturating kernel cannot', async () => {
    const session = await ort.InferenceSession.create(model, sessionOptions('true'));
    try {
      const out = await session.run({ a: new ort.Tensor('uint8', new Uint8Array(K).fill(255), [1, K]) });
      expect(Array.from(out.y?.data as Int32Array)).toEqual([EXACT]);
    } finally {
      await session.release();
    }
  });

  it('onnxruntime receives the setting and rewrites the int8 weights for its u8·u8 kernels', async () => {
    // onnxruntime's verbose log (stderr of its native logger) names each graph transformer and
    // whether it changed the graph: read it from a child process that opens the session.
    const script = `
      const ort = require('onnxruntime-node');
      const options = { ...JSON.parse(process.env.OPTIONS), logSeverityLevel: 0, logVerbosityLevel: 0 };
      ort.InferenceSession.create(process.env.MODEL, options).then((s) => s.release());`;
    const log = async (exact: string): Promise<string> => {
      const { stderr } = await promisify(execFile)(process.execPath, ['-e', script], {
        cwd: process.cwd(),
        env: { ...process.env, OPTIONS: JSON.stringify(sessionOptions(exact)), MODEL: join(dir, 'mmi.onnx') },
        maxBuffer: 16 * 1024 * 1024,
      });
      return stderr;
    };
    const [on, off] = [await log('true'), await log('false')];
    expect(on).toMatch(/session\.x64quantprecision: 1/);
    // The rewrite exists on x86 only (elsewhere int8 kernels do not saturate).
    if (process.arch === 'x64') expect(on).toMatch(/Avx2WeightS8ToU8Transformer modified: 1/);
    expect(off).toMatch(/TraceSessionOptions/); // the log is there…
    expect(off).not.toMatch(/x64quantprecision|Avx2WeightS8ToU8Transformer/); // …without the rewrite
  });
});
