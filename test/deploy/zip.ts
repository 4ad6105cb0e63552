import * as fs from 'node:fs';
import { inflateRawSync } from 'node:zlib';

/** One entry of a zip's central directory. */
export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

/**
 * A minimal zip reader (central directory + stored/deflated entries), enough to measure and read
 * the archives `sls package` writes without depending on an `unzip` binary being installed.
 *
 * @example
 * ```ts
 * const zip = ZipFile.open('.serverless/predict.zip');
 * zip.unzippedBytes(); zip.read('functions/predict/handler.js');
 * ```
 */
export class ZipFile {
  private constructor(
    private readonly bytes: Buffer,
    readonly entries: ZipEntry[],
  ) {}

  static open(file: string): ZipFile {
    const bytes = fs.readFileSync(file);
    // End of central directory: signature 0x06054b50 within the last 64 KiB + 22 bytes.
    let eocd = -1;
    for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 65_557); i--) {
      if (bytes.readUInt32LE(i) === 0x06054b50) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new Error(`${file} is not a zip file`);
    const count = bytes.readUInt16LE(eocd + 10);
    let at = bytes.readUInt32LE(eocd + 16);
    const entries: ZipEntry[] = [];
    for (let n = 0; n < count; n++) {
      if (bytes.readUInt32LE(at) !== 0x02014b50) throw new Error(`${file}: bad central directory entry ${n}`);
      const nameLength = bytes.readUInt16LE(at + 28);
      const extraLength = bytes.readUInt16LE(at + 30);
      const commentLength = bytes.readUInt16LE(at + 32);
      entries.push({
        name: bytes.toString('utf8', at + 46, at + 46 + nameLength),
        method: bytes.readUInt16LE(at + 10),
        compressedSize: bytes.readUInt32LE(at + 20),
        uncompressedSize: bytes.readUInt32LE(at + 24),
        localHeaderOffset: bytes.readUInt32LE(at + 42),
      });
      at += 46 + nameLength + extraLength + commentLength;
    }
    return new ZipFile(bytes, entries);
  }

  /** Sum of the entries' uncompressed sizes: what Lambda counts against its 250 MB limit. */
  unzippedBytes(): number {
    return this.entries.reduce((sum, e) => sum + e.uncompressedSize, 0);
  }

  names(): string[] {
    return this.entries.map((e) => e.name);
  }

  /** The content of one entry. */
  read(name: string): Buffer {
    const entry = this.entries.find((e) => e.name === name);
    if (!entry) throw new Error(`no entry ${name}`);
    const at = entry.localHeaderOffset;
    const start = at + 30 + this.bytes.readUInt16LE(at + 26) + this.bytes.readUInt16LE(at + 28);
    const data = this.bytes.subarray(start, start + entry.compressedSize);
    if (entry.method === 0) return Buffer.from(data);
    if (entry.method === 8) return inflateRawSync(data);
    throw new Error(`${name}: unsupported compression method ${entry.method}`);
  }
}
