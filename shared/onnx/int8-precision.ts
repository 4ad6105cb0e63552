/**
 * Which int8 kernels are exact on this CPU. x86 CPUs without VNNI run onnxruntime's u8·s8 products
 * with vpmaddubsw, which sums pairs into int16 and saturates with full-range int8 weights (int8
 * models lose accuracy on such CPUs: Intel before Cascade Lake, AMD before Zen 4);
 * VNNI (vpdpbusd) and arm64 (sdot) accumulate in int32. Kept apart from the quantizers so that
 * the inference settings can read it without loading them.
 */
import { readFileSync } from 'node:fs';

/** {@link cpuSaturatesInt8}'s answer, once known. */
let saturates: boolean | undefined;

/**
 * True on x86 CPUs without VNNI, whose u8·s8 integer kernels (vpmaddubsw) saturate at int16 with
 * full-range int8 weights. arm64 (sdot) and VNNI CPUs accumulate exactly.
 *
 * @example
 * ```ts
 * const options = exactInt8SessionOptions(cpuSaturatesInt8());
 * ```
 */
export function cpuSaturatesInt8(): boolean {
  // The CPU does not change under a running process: read /proc/cpuinfo once.
  saturates ??= process.arch === 'x64' && !cpuHasVnni();
  return saturates;
}

/**
 * onnxruntime session options that keep int8 kernels exact on CPUs whose u8·s8 kernels saturate:
 * `session.x64quantprecision` has onnxruntime rewrite the int8 weights of QLinearConv, QGemm,
 * MatMulInteger, DynamicQuantizeMatMul… to uint8 at load and run its u8·u8 kernels, which
 * accumulate in int32. Those are slower, so ask for it only where it is needed (`exact`, default
 * {@link cpuSaturatesInt8}); onnxruntime applies the rewrite on any x86 CPU it is asked to
 * (measured ~1.2× slower on an AVX-512 VNNI CPU, whose u8·s8 kernels are exact anyway).
 *
 * @example
 * ```ts
 * const session = await ort.InferenceSession.create(bytes, { ...exactInt8SessionOptions(), intraOpNumThreads: 2 });
 * ```
 */
export function exactInt8SessionOptions(exact: boolean = cpuSaturatesInt8()): {
  extra?: Record<string, unknown>;
} {
  return exact ? { extra: { session: { x64quantprecision: '1' } } } : {};
}

function cpuHasVnni(): boolean {
  try {
    return /\b(avx512_vnni|avx_vnni|amx_int8)\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return true; // unknown (no /proc): assume exact kernels, onnxruntime's default
  }
}
