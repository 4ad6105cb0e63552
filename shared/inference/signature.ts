/**
 * Checks a decoded request against a model version's stored signature, so that every mistake a
 * client can make is reported as a 400 naming the tensor and what was expected, before
 * onnxruntime is called (whose own messages are cryptic and would be 500s).
 */
import { InvalidArgumentError } from '../errors';
import type { TensorSpec } from '../onnx/inspect';
import type { InferRequest } from './codec';

/** The part of a model's metadata validation needs. */
export interface Signature {
  inputs: readonly TensorSpec[];
  outputs: readonly TensorSpec[];
}

/** Outputs to compute and how to send each, after validation. */
export interface OutputPlan {
  names: string[];
  binary: boolean[];
}

/**
 * Validates inputs (all present, none unknown, datatype, rank, fixed dims) and requested outputs
 * (all known); returns which outputs to fetch.
 * @example
 * const plan = checkRequest(request, version.onnx); // throws InvalidArgumentError on mismatch
 * await session.run(feeds, plan.names);
 */
export function checkRequest(request: InferRequest, signature: Signature): OutputPlan {
  const expected = new Map(signature.inputs.map((s) => [s.name, s]));
  for (const input of request.inputs) {
    const spec = expected.get(input.name);
    if (!spec) {
      throw new InvalidArgumentError(
        `unknown input '${input.name}'; the model expects ${describeInputs(signature.inputs)}`,
        { input: input.name },
      );
    }
    if (input.datatype !== spec.datatype) {
      throw new InvalidArgumentError(
        `input '${input.name}': datatype ${input.datatype} does not match the model's ${spec.datatype}`,
        {
          input: input.name,
          expected: spec.datatype,
        },
      );
    }
    if (!spec.unknownRank) {
      if (input.shape.length !== spec.shape.length) {
        throw new InvalidArgumentError(
          `input '${input.name}': shape [${input.shape.join(', ')}] has rank ${input.shape.length}, the model expects rank ${spec.shape.length} ${shapeText(spec.shape)}`,
          { input: input.name, expected: spec.shape },
        );
      }
      spec.shape.forEach((d, i) => {
        if (d >= 0 && input.shape[i] !== d) {
          throw new InvalidArgumentError(
            `input '${input.name}': dimension ${i} is ${input.shape[i]}, the model expects ${d} ${shapeText(spec.shape)}`,
            { input: input.name, expected: spec.shape },
          );
        }
      });
    }
  }
  if (request.inputs.length !== expected.size) {
    const given = new Set(request.inputs.map((i) => i.name));
    const missing = signature.inputs.filter((s) => !given.has(s.name)).map((s) => `'${s.name}'`);
    throw new InvalidArgumentError(
      `missing input ${missing.join(', ')}; the model expects ${describeInputs(signature.inputs)}`,
      { missing },
    );
  }

  if (!request.outputs) {
    return {
      names: signature.outputs.map((o) => o.name),
      binary: signature.outputs.map(() => request.binaryOutputs),
    };
  }
  const known = new Set(signature.outputs.map((o) => o.name));
  for (const o of request.outputs) {
    if (!known.has(o.name)) {
      throw new InvalidArgumentError(
        `unknown output '${o.name}'; the model has ${signature.outputs.map((s) => `'${s.name}'`).join(', ')}`,
        { output: o.name },
      );
    }
  }
  // An empty list is read as "all outputs", as Triton does.
  if (request.outputs.length === 0)
    return checkRequest({ ...request, outputs: undefined } as InferRequest, signature);
  return { names: request.outputs.map((o) => o.name), binary: request.outputs.map((o) => o.binary) };
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.map((d) => (d < 0 ? '-1' : String(d))).join(', ')}] (-1: any)`;
}

function describeInputs(inputs: readonly TensorSpec[]): string {
  if (inputs.length === 0) return 'no inputs (send "inputs": [])';
  return inputs
    .map((s) => `'${s.name}' ${s.datatype}${s.unknownRank ? '' : ` ${shapeText(s.shape)}`}`)
    .join(', ');
}
