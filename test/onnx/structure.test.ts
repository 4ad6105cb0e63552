import { clone, create } from '@bufbuild/protobuf';
import fc from 'fast-check';
import {
  type ModelProto,
  ModelProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataLocation,
} from 'onnx-buf';
import { describe, expect, it } from 'vitest';
import {
  buildConvNet,
  buildIdentityModel,
  buildIfModel,
  buildMlp,
  makeGraph,
  makeModel,
  makeNode,
  makeValueInfo,
  mulberry32,
  tensorFromFloat32,
} from '../../dev/onnx-builder';
import { UnprocessableError } from '../../shared/errors';
import { decodeModel, encodeModel } from '../../shared/onnx/codec';
import { inspectModel, inspectModelSource, inspectModelStructure } from '../../shared/onnx/inspect';
import {
  decodeStructure,
  type RandomAccessSource,
  StructureScanner,
  scanModelBytes,
  scanModelSource,
  skippedPayloadBytes,
} from '../../shared/onnx/structure';
import { buildBundle, editedGraph } from '../support/bundles';

const MODELS = {
  mlp: buildMlp({ inputSize: 16, hiddenSizes: [32, 8], outputSize: 4, seed: 1 }).bytes,
  conv: buildConvNet({ seed: 2 }).bytes,
  if: buildIfModel({ seed: 3 }).bytes,
  identity: buildIdentityModel('FP32', ['batch', 4]).bytes,
};

/** The model with every tensor payload emptied, as the skeleton should decode. */
function withoutPayloads(bytes: Uint8Array): ModelProto {
  const model = decodeModel(bytes);
  const strip = (m: ModelProto): void => {
    const visit = (o: unknown): void => {
      if (o === null || typeof o !== 'object') return;
      const r = o as Record<string, unknown>;
      if (r.$typeName === 'onnx.TensorProto') {
        for (const f of ['floatData', 'int32Data', 'stringData', 'int64Data', 'doubleData', 'uint64Data'])
          (r as Record<string, unknown[]>)[f] = [];
        r.rawData = new Uint8Array();
      }
      for (const v of Object.values(r)) if (typeof v === 'object') visit(v);
    };
    visit(m);
  };
  strip(model);
  return model;
}

function payloadBytes(model: ModelProto): number {
  let total = 0;
  const visit = (o: unknown): void => {
    if (o === null || typeof o !== 'object') return;
    const r = o as Record<string, unknown>;
    if (r.$typeName === 'onnx.TensorProto') total += (r.rawData as Uint8Array).byteLength;
    for (const v of Object.values(r)) if (typeof v === 'object' && !(v instanceof Uint8Array)) visit(v);
  };
  visit(model);
  return total;
}

function sourceOf(bytes: Uint8Array): RandomAccessSource & { reads: number; bytesRead: number } {
  const source = {
    size: bytes.length,
    reads: 0,
    bytesRead: 0,
    async read(offset: number, length: number) {
      source.reads++;
      source.bytesRead += length;
      return bytes.slice(offset, offset + length);
    },
  };
  return source;
}

function streamScan(bytes: Uint8Array, seed: number, size?: number): ReturnType<StructureScanner['end']> {
  const rand = mulberry32(seed);
  const scanner = new StructureScanner(size === undefined ? {} : { size });
  for (let at = 0; at < bytes.length; ) {
    const n = Math.min(bytes.length - at, 1 + Math.floor(rand() * (rand() < 0.5 ? 7 : 300)));
    scanner.write(bytes.subarray(at, at + n));
    at += n;
  }
  return scanner.end();
}

describe('model structure without payloads', () => {
  it.each(Object.entries(MODELS))('the %s skeleton decodes to the model minus its payloads', (_, bytes) => {
    const structure = scanModelBytes(bytes);
    const skeleton = decodeStructure(structure.skeleton);
    const expected = withoutPayloads(bytes);
    // The private skipped-bytes field aside, everything else is kept exactly.
    const clean = clone(ModelProtoSchema, skeleton);
    const dropUnknown = (o: unknown): void => {
      if (o === null || typeof o !== 'object' || o instanceof Uint8Array) return;
      const r = o as Record<string, unknown>;
      if (r.$typeName === 'onnx.TensorProto') delete r.$unknown;
      for (const v of Object.values(r)) dropUnknown(v);
    };
    dropUnknown(clean);
    const emptyRaw = (o: unknown): void => {
      if (o === null || typeof o !== 'object' || o instanceof Uint8Array) return;
      const r = o as Record<string, unknown>;
      if (r.$typeName === 'onnx.TensorProto') r.rawData = new Uint8Array();
      for (const v of Object.values(r)) emptyRaw(v);
    };
    emptyRaw(clean);
    expect(clean).toEqual(expected);
    expect(structure.skippedBytes).toBe(payloadBytes(decodeModel(bytes)));
    expect(structure.skeleton.length).toBeLessThanOrEqual(bytes.length);
    const initializer = skeleton.graph?.initializer[0];
    if (initializer)
      expect(skippedPayloadBytes(initializer)).toBe(decodeModel(bytes).graph!.initializer[0]!.rawData.length);
  });

  it.each(Object.entries(MODELS))(
    'the %s skeleton is the same from bytes, a random-access source and a chunked stream',
    async (_, bytes) => {
      const fromBytes = scanModelBytes(bytes).skeleton;
      expect((await scanModelSource(sourceOf(bytes), { windowBytes: 64 })).skeleton).toEqual(fromBytes);
      for (let seed = 1; seed <= 5; seed++) {
        expect(streamScan(bytes, seed).skeleton).toEqual(fromBytes);
        expect(streamScan(bytes, seed, bytes.length).skeleton).toEqual(fromBytes);
      }
    },
  );

  it('a big single-file model is read with its payloads jumped over', async () => {
    const big = buildMlp({ inputSize: 512, hiddenSizes: [1024], outputSize: 512, seed: 4 }).bytes; // ~4 MB
    const source = sourceOf(big);
    const info = await inspectModelSource(source, { maxStructureBytes: 64 * 1024, windowBytes: 4096 });
    expect(info.parameterCount).toBe(512 * 1024 + 1024 + 1024 * 512 + 512);
    expect(info.initializerBytes).toBe(4 * info.parameterCount);
    expect(big.length).toBeGreaterThan(4_000_000);
    expect(source.bytesRead).toBeLessThan(64 * 1024);
    // The same limit applies to whatever is not a payload: a huge doc string is refused.
    const model = decodeModel(big);
    model.docString = 'x'.repeat(100_000);
    const error = await inspectModelSource(sourceOf(encodeModel(model)), {
      maxStructureBytes: 64 * 1024,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnprocessableError);
    expect((error as Error).message).toMatch(/structure .* larger than 65536 bytes/);
  });

  it('a forged skipped-bytes field in the input is dropped', () => {
    const model = decodeModel(MODELS.mlp);
    const t = model.graph!.initializer[0]!;
    t.$unknown = [{ no: 536_870_911, wireType: 0, data: Uint8Array.of(1) }];
    const bytes = encodeModel(model);
    const skeleton = decodeStructure(scanModelBytes(bytes).skeleton);
    expect(skippedPayloadBytes(skeleton.graph!.initializer[0]!)).toBe(t.rawData.length);
    expect(inspectModel(bytes).initializerBytes).toBe(inspectModel(MODELS.mlp).initializerBytes);
  });

  it('truncated streams and trailing bytes are refused as not ONNX', () => {
    const bytes = MODELS.identity;
    for (const n of [1, 5, bytes.length - 1]) {
      const scanner = new StructureScanner({ size: bytes.length });
      expect(() => {
        scanner.write(bytes.subarray(0, n));
        scanner.end();
      }).toThrow(/not a valid ONNX model/);
    }
    const scanner = new StructureScanner({ size: bytes.length });
    expect(() => scanner.write(Buffer.concat([bytes, Uint8Array.of(8, 1)]))).toThrow(/after the end/);
  });
});

describe('external data of a bundle graph', () => {
  const files = (bundle: ReturnType<typeof buildBundle>): Map<string, number> =>
    new Map(bundle.files.slice(1).map((f) => [f.name, f.bytes.length]));
  const inspectBundle = (graph: Uint8Array, bundleFiles: ReadonlyMap<string, number>) =>
    inspectModelStructure(scanModelBytes(graph), { bundleFiles });

  it.each(['single', 'per-tensor'] as const)(
    'a %s-file bundle is accepted with its referenced files and bytes',
    (layout) => {
      const bundle = buildBundle({ layout, align: layout === 'single' ? 64 : 0 });
      const { info, referencedFiles } = inspectBundle(bundle.files[0]!.bytes, files(bundle));
      expect([...referencedFiles].sort()).toEqual(
        bundle.files
          .slice(1)
          .map((f) => f.name)
          .sort(),
      );
      const parameters = 8 * 16 + 16 + 16 * 3 + 3;
      expect(info.parameterCount).toBe(parameters);
      expect(info.initializerBytes).toBe(4 * parameters);
      expect(info.inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [-1, 8] }]);
    },
  );

  it('a graph with external data is refused without a bundle (single-file rules)', () => {
    const bundle = buildBundle();
    const error = (() => {
      try {
        inspectModel(bundle.files[0]!.bytes);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error).toBeInstanceOf(UnprocessableError);
    expect(error?.message).toMatch(
      /tensor "fc0.weight" .*uses external data stored in file "model.onnx.data"/,
    );
  });

  const entry = (key: string, value: string) => create(StringStringEntryProtoSchema, { key, value });
  const malicious: [string, (m: ModelProto) => void, RegExp][] = [
    [
      'a parent directory',
      (m) => (m.graph!.initializer[0]!.externalData[0]!.value = '../model.onnx.data'),
      /location "..\/model.onnx.data" is not a plain file name of the bundle \(it contains a path separator\)/,
    ],
    [
      'an absolute path',
      (m) => (m.graph!.initializer[0]!.externalData[0]!.value = '/etc/passwd'),
      /"\/etc\/passwd" is not a plain file name/,
    ],
    [
      'a backslash path',
      (m) => (m.graph!.initializer[0]!.externalData[0]!.value = '..\\secret'),
      /not a plain file name .*path separator/,
    ],
    [
      'a drive letter',
      (m) => (m.graph!.initializer[0]!.externalData[0]!.value = 'C:model.onnx.data'),
      /drive letter/,
    ],
    ['a NUL byte', (m) => (m.graph!.initializer[0]!.externalData[0]!.value = 'model.onnx.data\0.png'), /NUL/],
    ['dot-dot', (m) => (m.graph!.initializer[0]!.externalData[0]!.value = '..'), /relative path component/],
    [
      'a missing file',
      (m) => (m.graph!.initializer[0]!.externalData[0]!.value = 'other.data'),
      /"other.data" is not a file of the bundle/,
    ],
    [
      'an offset past the end',
      (m) => (m.graph!.initializer[1]!.externalData[1]!.value = '100000'),
      /lies outside "model.onnx.data"/,
    ],
    [
      'a length past the end',
      (m) => {
        const t = m.graph!.initializer[3]!;
        t.dims = [BigInt(1000)];
        t.externalData[2]!.value = '4000';
      },
      /lies outside/,
    ],
    [
      'a length that is not the tensor size',
      (m) => (m.graph!.initializer[0]!.externalData[2]!.value = '4'),
      /length 4 does not match the tensor's 512 bytes/,
    ],
    [
      'a negative offset',
      (m) => (m.graph!.initializer[0]!.externalData[1]!.value = '-8'),
      /offset "-8" is not a non-negative integer/,
    ],
    [
      'a hex offset',
      (m) => (m.graph!.initializer[0]!.externalData[1]!.value = '0x10'),
      /not a non-negative integer/,
    ],
    [
      'a duplicate key',
      (m) => m.graph!.initializer[0]!.externalData.push(entry('location', 'model.onnx.data')),
      /"location" appears twice/,
    ],
    [
      'an unknown key',
      (m) => m.graph!.initializer[0]!.externalData.push(entry('basepath', '/')),
      /unknown external data key "basepath"/,
    ],
    ['no location', (m) => m.graph!.initializer[0]!.externalData.splice(0, 1), /has no location/],
    [
      'entries without data_location EXTERNAL',
      (m) => (m.graph!.initializer[0]!.dataLocation = TensorProto_DataLocation.DEFAULT),
      /data_location is not EXTERNAL/,
    ],
  ];

  it.each(malicious)('refuses %s with a 422 naming the tensor', (_, edit, message) => {
    const bundle = buildBundle({ align: 64 });
    const graph = editedGraph(bundle, edit);
    const error = (() => {
      try {
        inspectBundle(graph, files(bundle));
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error).toBeInstanceOf(UnprocessableError);
    expect(error?.message).toMatch(/^tensor "fc[01]\.(weight|bias)" \(graph initializer\): /);
    expect(error?.message).toMatch(message);
  });

  it('external data in a Constant node inside a subgraph is checked too', () => {
    const c = tensorFromFloat32('deep_c', [2], Float32Array.of(1, 2));
    c.rawData = new Uint8Array();
    c.dataLocation = TensorProto_DataLocation.EXTERNAL;
    c.externalData = [entry('location', '../escape.bin'), entry('offset', '0'), entry('length', '8')];
    const body = makeGraph({
      name: 'then',
      nodes: [makeNode('Constant', [], ['t'], { value: { tensor: c } })],
      inputs: [],
      outputs: [makeValueInfo('t', 'FP32', [2])],
    });
    const model = makeModel(
      makeGraph({
        nodes: [
          makeNode('If', ['cond'], ['y'], { then_branch: { graph: body }, else_branch: { graph: body } }),
        ],
        inputs: [makeValueInfo('cond', 'BOOL', [])],
        outputs: [makeValueInfo('y', 'FP32', [2])],
      }),
    );
    expect(() => inspectBundle(encodeModel(model), new Map([['escape.bin', 8]]))).toThrow(
      /tensor "deep_c" .*"..\/escape.bin" is not a plain file name/,
    );
  });
});

describe('structure scans agree on mutated models (fuzzed)', () => {
  it('bytes, source and stream scans give the same skeleton or the same 422', async () => {
    const seeds = Object.values(MODELS);
    const outcome = async (scan: () => Promise<Uint8Array> | Uint8Array): Promise<string> => {
      try {
        return Buffer.from(await scan()).toString('base64');
      } catch (e) {
        expect(e).toBeInstanceOf(UnprocessableError);
        return 'refused';
      }
    };
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: seeds.length - 1 }),
        fc.array(fc.record({ at: fc.nat(), bits: fc.integer({ min: 1, max: 255 }) }), {
          minLength: 1,
          maxLength: 3,
        }),
        fc.nat(),
        async (which, flips, cut) => {
          const b = Buffer.from(seeds[which]!);
          for (const f of flips) b[f.at % b.length]! ^= f.bits;
          const bytes = cut % 3 === 0 ? b.subarray(0, cut % b.length) : b;
          const expected = await outcome(() => scanModelBytes(bytes).skeleton);
          expect(
            await outcome(async () => (await scanModelSource(sourceOf(bytes), { windowBytes: 32 })).skeleton),
          ).toBe(expected);
          expect(await outcome(() => streamScan(bytes, cut, bytes.length).skeleton)).toBe(expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});
