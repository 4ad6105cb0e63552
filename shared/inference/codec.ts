/**
 * Open Inference Protocol (KServe v2 / Triton) request and response bodies, in JSON and with the
 * binary tensor data extension (`Inference-Header-Content-Length`, `binary_data_size`,
 * `binary_data`). Knows nothing of models: checking against a signature is `signature.ts`'s job.
 */
import { InvalidArgumentError, UnsupportedMediaTypeError } from '../errors';
import { isOipDatatype, OIP_DATATYPES, type OipDatatype } from '../onnx/datatypes';
import {
  binaryDataOf,
  checkedElementCount,
  isBareNonFinite,
  jsonDataOf,
  parseJsonMarkingNonFinite,
  type TensorValues,
  valuesFromBinary,
  valuesFromJson,
} from './tensors';

/** One decoded input tensor. */
export interface InferInput {
  name: string;
  datatype: OipDatatype;
  shape: number[];
  data: TensorValues;
  parameters?: Record<string, unknown>;
}

/** An output the client asked for, and whether it wants it as binary data. */
export interface RequestedOutput {
  name: string;
  binary: boolean;
}

/** A decoded inference request. */
export interface InferRequest {
  id?: string;
  parameters?: Record<string, unknown>;
  inputs: InferInput[];
  /** Outputs the client named; undefined means all of them. */
  outputs?: RequestedOutput[];
  /** `parameters.binary_data_output`: send outputs the client did not configure as binary. */
  binaryOutputs: boolean;
}

/** One output tensor of a response. */
export interface InferOutput {
  name: string;
  datatype: OipDatatype;
  shape: readonly number[];
  data: TensorValues;
  binary: boolean;
}

/** An encoded response body and the headers that describe it. */
export interface EncodedBody {
  body: Buffer | string;
  contentType: string;
  /** Set for binary responses: the length of the JSON header that precedes the tensor bytes. */
  headerLength?: number;
}

/** How the body arrived: its content type and the binary extension's header length, if any. */
export interface DecodeOptions {
  contentType?: string;
  /** `Inference-Header-Content-Length` as sent (validated here). */
  headerLength?: string;
}

const MAX_RANK = 32;

/**
 * Longest request `id` accepted (characters). The id is echoed in the response, logged, and used
 * to pin a caller to one side of a canary split, so an unbounded one would let a client inflate
 * every record it touches.
 */
export const MAX_REQUEST_ID_LENGTH = 256;

/**
 * Decodes an inference request body. Throws InvalidArgumentError (400) for malformed JSON or
 * tensors or an `id` over {@link MAX_REQUEST_ID_LENGTH} characters, UnsupportedMediaTypeError
 * (415) for a non-JSON body without the binary header. Float data may hold the non-finite
 * literals `NaN`, `Infinity`, `-Infinity`, bare (as Python's `json` writes them) or quoted.
 * @example
 * const request = decodeInferRequest(Buffer.from('{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}'));
 */
export function decodeInferRequest(body: Uint8Array | string, options: DecodeOptions = {}): InferRequest {
  if (
    options.headerLength === undefined &&
    options.contentType &&
    !/^application\/(.+\+)?json\b/i.test(options.contentType)
  ) {
    throw new UnsupportedMediaTypeError(
      `expected application/json (or the binary tensor extension with an Inference-Header-Content-Length header), got ${options.contentType}`,
    );
  }
  // A JSON body that arrived as text is parsed as is: encoding it to bytes only to decode it
  // again would cost ~1 ms per MB on the request path.
  if (typeof body === 'string') {
    if (options.headerLength === undefined)
      return decodeDocument(parseJson(body), Buffer.alloc(0), 0, options, body.length);
    body = Buffer.from(body, 'utf8');
  }
  let headerLength = body.byteLength;
  if (options.headerLength !== undefined) {
    const n = /^[0-9]{1,10}$/.test(options.headerLength.trim()) ? Number(options.headerLength.trim()) : NaN;
    if (!Number.isSafeInteger(n) || n > body.byteLength) {
      throw new InvalidArgumentError(
        `Inference-Header-Content-Length must be an integer between 0 and the body size (${body.byteLength}), got ${JSON.stringify(options.headerLength)}`,
      );
    }
    headerLength = n;
  }
  return decodeDocument(
    parseJson(Buffer.from(body.buffer, body.byteOffset, headerLength).toString('utf8')),
    body,
    headerLength,
    options,
    headerLength,
  );
}

function parseJson(text: string): unknown {
  if (text.length === 0)
    throw new InvalidArgumentError('request body is empty; expected an inference request with "inputs"');
  try {
    return parseJsonMarkingNonFinite(text);
  } catch (e) {
    throw new InvalidArgumentError(`malformed JSON in the inference request: ${(e as Error).message}`);
  }
}

/**
 * The request from its parsed JSON header; binary inputs are read from `body` after
 * `headerLength`. `jsonLength` is the length of the JSON text: every JSON element takes at least
 * two characters of it (a digit and a separator), which bounds what JSON inputs may claim.
 */
function decodeDocument(
  doc: unknown,
  body: Uint8Array,
  headerLength: number,
  options: DecodeOptions,
  jsonLength: number,
): InferRequest {
  if (!isObject(doc)) throw new InvalidArgumentError('the inference request must be a JSON object');
  const request: InferRequest = { inputs: [], binaryOutputs: false };
  if (doc.id !== undefined) {
    if (typeof doc.id !== 'string' || isBareNonFinite(doc.id))
      throw new InvalidArgumentError('"id" must be a string');
    if (doc.id.length > MAX_REQUEST_ID_LENGTH) {
      throw new InvalidArgumentError(
        `"id" is ${doc.id.length} characters long; at most ${MAX_REQUEST_ID_LENGTH} are accepted`,
      );
    }
    request.id = doc.id;
  }
  if (doc.parameters !== undefined) {
    if (!isObject(doc.parameters)) throw new InvalidArgumentError('"parameters" must be an object');
    request.parameters = doc.parameters;
    const bo = doc.parameters.binary_data_output;
    if (bo !== undefined && typeof bo !== 'boolean')
      throw new InvalidArgumentError('parameters.binary_data_output must be a boolean');
    request.binaryOutputs = bo === true;
  }
  // Empty is valid: a model without inputs (a constant generator) is called with `inputs: []`;
  // checkRequest (signature.ts) names what a model with inputs is missing.
  if (!Array.isArray(doc.inputs)) throw new InvalidArgumentError('"inputs" must be an array');

  let offset = headerLength;
  // Shared by all JSON inputs: together they cannot hold more elements than the text has room for.
  let jsonRoom = Math.floor(jsonLength / 2);
  const seen = new Set<string>();
  for (const [i, raw] of doc.inputs.entries()) {
    if (!isObject(raw)) throw new InvalidArgumentError(`inputs[${i}] must be an object`);
    const name = raw.name;
    if (typeof name !== 'string' || name === '')
      throw new InvalidArgumentError(`inputs[${i}].name must be a non-empty string`);
    if (seen.has(name))
      throw new InvalidArgumentError(`input '${name}' is given more than once`, { input: name });
    seen.add(name);
    const datatype = raw.datatype;
    if (!isOipDatatype(datatype)) {
      throw new InvalidArgumentError(
        `input '${name}': datatype must be one of ${OIP_DATATYPES.join(', ')}, got ${JSON.stringify(datatype)}`,
        { input: name },
      );
    }
    const shape = parseShape(name, raw.shape);
    let parameters: Record<string, unknown> | undefined;
    if (raw.parameters !== undefined) {
      if (!isObject(raw.parameters))
        throw new InvalidArgumentError(`input '${name}': parameters must be an object`, { input: name });
      parameters = raw.parameters;
    }
    const size = parameters?.binary_data_size;
    let data: TensorValues;
    if (size !== undefined) {
      if (options.headerLength === undefined) {
        throw new InvalidArgumentError(
          `input '${name}' has binary_data_size but the request has no Inference-Header-Content-Length header`,
          { input: name },
        );
      }
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
        throw new InvalidArgumentError(`input '${name}': binary_data_size must be a non-negative integer`, {
          input: name,
        });
      }
      if (raw.data !== undefined)
        throw new InvalidArgumentError(`input '${name}' has both data and binary_data_size`, { input: name });
      if (offset + size > body.byteLength) {
        throw new InvalidArgumentError(
          `input '${name}': binary_data_size ${size} runs past the end of the body (${body.byteLength - offset} bytes left)`,
          {
            input: name,
          },
        );
      }
      data = valuesFromBinary(name, datatype, shape, body.subarray(offset, offset + size));
      offset += size;
    } else {
      if (raw.data === undefined)
        throw new InvalidArgumentError(`input '${name}' has no data`, { input: name });
      jsonRoom -= checkedElementCount(
        name,
        shape,
        jsonRoom,
        `the ${jsonLength}-character JSON request (2 or more characters per element)`,
      );
      data = valuesFromJson(name, datatype, shape, raw.data);
    }
    request.inputs.push({ name, datatype, shape, data, ...(parameters ? { parameters } : {}) });
  }
  if (offset !== body.byteLength) {
    throw new InvalidArgumentError(
      `the body has ${body.byteLength - offset} bytes after the header and binary inputs that no input claims (check binary_data_size)`,
    );
  }

  if (doc.outputs !== undefined) {
    if (!Array.isArray(doc.outputs)) throw new InvalidArgumentError('"outputs" must be an array');
    const names = new Set<string>();
    request.outputs = doc.outputs.map((raw, i) => {
      if (!isObject(raw) || typeof raw.name !== 'string' || raw.name === '')
        throw new InvalidArgumentError(`outputs[${i}] must be an object with a name`);
      if (names.has(raw.name))
        throw new InvalidArgumentError(`output '${raw.name}' is requested more than once`, {
          output: raw.name,
        });
      names.add(raw.name);
      let binary = request.binaryOutputs;
      if (raw.parameters !== undefined) {
        if (!isObject(raw.parameters))
          throw new InvalidArgumentError(`output '${raw.name}': parameters must be an object`, {
            output: raw.name,
          });
        const b = raw.parameters.binary_data;
        if (b !== undefined && typeof b !== 'boolean')
          throw new InvalidArgumentError(`output '${raw.name}': parameters.binary_data must be a boolean`, {
            output: raw.name,
          });
        if (typeof b === 'boolean') binary = b;
      }
      return { name: raw.name, binary };
    });
  }
  return request;
}

function parseShape(input: string, shape: unknown): number[] {
  if (
    !Array.isArray(shape) ||
    shape.length > MAX_RANK ||
    !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new InvalidArgumentError(
      `input '${input}': shape must be an array of at most ${MAX_RANK} non-negative integers`,
      { input },
    );
  }
  return shape as number[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The response fields besides the outputs. */
export interface ResponseHead {
  modelName: string;
  modelVersion: string;
  id?: string;
}

/**
 * Encodes an inference response: plain JSON when no output is binary, else the JSON header
 * followed by the binary outputs in order (the caller sends `headerLength` as
 * `Inference-Header-Content-Length`). The JSON is assembled from pre-serialized pieces so large
 * outputs are written once, without intermediate arrays. Non-finite floats are written as the
 * bare literals `NaN`, `Infinity` and `-Infinity` (Triton's and Python's `json` form).
 * @example
 * const { body, contentType } = encodeInferResponse({ modelName: 'iris', modelVersion: '1' }, outputs);
 */
export function encodeInferResponse(head: ResponseHead, outputs: readonly InferOutput[]): EncodedBody {
  const chunks: Uint8Array[] = [];
  const parts = outputs.map((o) => {
    const common = `{"name":${JSON.stringify(o.name)},"datatype":"${o.datatype}","shape":[${o.shape.join(',')}]`;
    if (!o.binary) return `${common},"data":${jsonDataOf(o.datatype, o.data)}}`;
    const bytes = binaryDataOf(o.datatype, o.data);
    chunks.push(bytes);
    return `${common},"parameters":{"binary_data_size":${bytes.byteLength}}}`;
  });
  const json =
    `{"model_name":${JSON.stringify(head.modelName)},"model_version":${JSON.stringify(head.modelVersion)}` +
    (head.id !== undefined ? `,"id":${JSON.stringify(head.id)}` : '') +
    `,"outputs":[${parts.join(',')}]}`;
  if (chunks.length === 0) return { body: json, contentType: 'application/json' };
  const header = Buffer.from(json, 'utf8');
  return {
    body: Buffer.concat([header, ...chunks]),
    contentType: 'application/octet-stream',
    headerLength: header.byteLength,
  };
}
