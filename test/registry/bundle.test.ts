import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../shared/errors';
import {
  assertBundleFileName,
  assertBundleFileNames,
  bundleBlobKey,
  bundleDigest,
  bundleFileNameProblem,
  bundleFileRole,
  COMPANION_FILES,
  isBundle,
  versionFiles,
} from '../../shared/registry/bundle';
import type { BundleFile, ModelVersion } from '../../shared/registry/types';

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

describe('bundle file names', () => {
  it.each([
    'model.onnx',
    'model.onnx.data',
    'weights_0.bin',
    'onnx__MatMul_123',
    'ünïcødé.bin',
    'a'.repeat(255),
    'x.y.z',
    '.hidden',
  ])('accepts the plain name %j', (name) => {
    expect(bundleFileNameProblem(name)).toBeUndefined();
    expect(() => assertBundleFileName(name)).not.toThrow();
  });

  it.each([
    ['', 'is empty'],
    ['a/b.bin', 'contains a path separator'],
    ['/etc/passwd', 'contains a path separator'],
    ['..\\x.bin', 'contains a path separator'],
    ['sub\\x.bin', 'contains a path separator'],
    ['..', 'is or contains a relative path component'],
    ['.', 'is or contains a relative path component'],
    ['a..b', 'is or contains a relative path component'],
    ['C:weights.bin', 'starts with a drive letter'],
    ['z:x', 'starts with a drive letter'],
    ['bad\0name', 'contains a NUL character'],
    ['line\nbreak', 'contains a control character'],
    ['tab\there', 'contains a control character'],
    ['del\u007f', 'contains a control character'],
    ['a'.repeat(256), 'is longer than 255 bytes'],
    ['é'.repeat(128), 'is longer than 255 bytes'], // 256 UTF-8 bytes in 128 characters
    ['lone\uD800surrogate', 'is not valid Unicode'],
  ])('refuses %j: %s', (name, reason) => {
    expect(bundleFileNameProblem(name)).toBe(reason);
    const error = (() => {
      try {
        assertBundleFileName(name);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toContain(reason);
  });

  it('refuses non-strings', () => {
    expect(() => assertBundleFileName(42)).toThrow(InvalidArgumentError);
    expect(() => assertBundleFileName(undefined)).toThrow(InvalidArgumentError);
  });

  it('refuses duplicates, also those differing only in case', () => {
    expect(() => assertBundleFileNames(['model.onnx', 'model.onnx.data', 'tokenizer.json'])).not.toThrow();
    expect(() => assertBundleFileNames(['w.bin', 'model.onnx', 'w.bin'])).toThrow(/"w.bin" appears twice/);
    expect(() => assertBundleFileNames(['W.bin', 'w.bin'])).toThrow(/differ only in case/);
    expect(() => assertBundleFileNames(['ok.bin', 'a/b'])).toThrow(/path separator/);
  });
});

describe('bundle file roles and blob keys', () => {
  it('the .onnx file is the graph, allowlisted names are companions, the rest data', () => {
    expect(bundleFileRole('model.onnx')).toBe('graph');
    expect(bundleFileRole('MODEL.ONNX')).toBe('graph');
    expect(bundleFileRole('model.onnx.data')).toBe('data');
    for (const name of COMPANION_FILES) expect(bundleFileRole(name)).toBe('companion');
    expect(bundleFileRole('tokenizer.json.bak')).toBe('data');
  });

  it('graphs share today’s .onnx blob keys; other files get .bin keys', () => {
    const hex = sha('x');
    expect(bundleBlobKey(hex, 'graph')).toBe(`blobs/sha256/${hex}.onnx`);
    expect(bundleBlobKey(hex, 'data')).toBe(`blobs/sha256/${hex}.bin`);
    expect(bundleBlobKey(hex, 'companion')).toBe(`blobs/sha256/${hex}.bin`);
  });
});

describe('bundleDigest', () => {
  const files = [
    { name: 'model.onnx', size: 120, sha256: sha('graph') },
    { name: 'model.onnx.data', size: 4096, sha256: sha('data') },
    { name: 'Zeta.bin', size: 1, sha256: sha('z') },
    { name: 'é.bin', size: 2, sha256: sha('e') },
  ];

  it('is the sha256 of the name-sorted (UTF-8 byte order) name\\tsize\\tsha256 lines', () => {
    // Byte order: 'Z' (0x5a) < 'm' (0x6d) < 'é' (0xc3 0xa9).
    const expected = createHash('sha256')
      .update(
        `Zeta.bin\t1\t${sha('z')}\nmodel.onnx\t120\t${sha('graph')}\nmodel.onnx.data\t4096\t${sha('data')}\né.bin\t2\t${sha('e')}\n`,
      )
      .digest('hex');
    expect(bundleDigest(files)).toBe(expected);
  });

  it('does not depend on the order of the files, and changes with any name, size or hash', () => {
    const digest = bundleDigest(files);
    expect(bundleDigest([...files].reverse())).toBe(digest);
    expect(bundleDigest(files.map((f, i) => (i === 1 ? { ...f, size: 4097 } : f)))).not.toBe(digest);
    expect(bundleDigest(files.map((f, i) => (i === 1 ? { ...f, name: 'model.data' } : f)))).not.toBe(digest);
    expect(bundleDigest(files.map((f, i) => (i === 1 ? { ...f, sha256: sha('other') } : f)))).not.toBe(
      digest,
    );
    expect(bundleDigest(files.slice(1))).not.toBe(digest);
  });
});

describe('versionFiles and isBundle', () => {
  it('a single-file version lists one synthesized model.onnx graph entry', () => {
    const single: Pick<ModelVersion, 'files' | 'blobKey' | 'size' | 'sha256'> = {
      blobKey: `blobs/sha256/${sha('m')}.onnx`,
      size: 99,
      sha256: sha('m'),
    };
    expect(isBundle(single)).toBe(false);
    expect(versionFiles(single)).toEqual([
      { name: 'model.onnx', role: 'graph', size: 99, sha256: sha('m'), blobKey: single.blobKey },
    ]);
  });

  it('a bundle lists its files, graph first, as a copy', () => {
    const files: BundleFile[] = [
      {
        name: 'net.onnx',
        role: 'graph',
        size: 10,
        sha256: sha('g'),
        blobKey: `blobs/sha256/${sha('g')}.onnx`,
      },
      {
        name: 'net.onnx.data',
        role: 'data',
        size: 20,
        sha256: sha('d'),
        blobKey: `blobs/sha256/${sha('d')}.bin`,
      },
    ];
    const bundle = { files, blobKey: files[0]!.blobKey, size: 30, sha256: bundleDigest(files) };
    expect(isBundle(bundle)).toBe(true);
    const listed = versionFiles(bundle);
    expect(listed).toEqual(files);
    listed.pop();
    expect(bundle.files).toHaveLength(2);
  });
});
