/** Arbitraries shared by the OIP fuzz tests: request documents and text edits of a valid request. */
import fc from 'fast-check';
import { OIP_DATATYPES } from '../../shared/onnx/datatypes';

/** Values a field may hold: right ones, wrong types, extremes, the non-finite spellings. */
export const anyValue = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e308, '', 'NaN', '-Infinity', 'x'),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 8 }),
  fc.array(fc.integer({ min: -2, max: 4 }), { maxLength: 4 }),
);
const datatype = fc.oneof(fc.constantFrom(...OIP_DATATYPES), anyValue);
const shape = fc.oneof(
  fc.array(fc.integer({ min: -1, max: 5 }), { maxLength: 4 }),
  anyValue,
  fc.constant([2 ** 40, 2 ** 40]),
);
const data = fc.oneof(
  fc.array(fc.oneof(fc.double(), fc.integer(), fc.string({ maxLength: 3 }), fc.boolean()), { maxLength: 12 }),
  fc.array(fc.array(fc.double(), { maxLength: 3 }), { maxLength: 4 }),
  anyValue,
);
const input = fc.record(
  {
    name: fc.oneof(fc.constantFrom('x', 's', 'z', ''), anyValue),
    datatype,
    shape,
    data,
    parameters: fc.oneof(fc.record({ binary_data_size: anyValue }), anyValue),
  },
  { requiredKeys: [] },
);
export const requestDoc = fc.record(
  {
    id: fc.oneof(fc.string({ maxLength: 300 }), anyValue),
    inputs: fc.oneof(fc.array(input, { maxLength: 3 }), anyValue),
    outputs: fc.oneof(
      fc.array(fc.record({ name: anyValue, parameters: fc.record({ binary_data: anyValue }) }), {
        maxLength: 2,
      }),
      anyValue,
    ),
    parameters: fc.oneof(fc.record({ binary_data_output: anyValue }), anyValue),
  },
  { requiredKeys: [] },
);

export const VALID = JSON.stringify({
  id: 'r1',
  inputs: [
    { name: 'x', shape: [2, 3], datatype: 'FP32', data: [1, 2, 3, 4, 5, NaN] },
    { name: 's', shape: [1], datatype: 'BYTES', data: ['a'] },
  ],
}).replace('null', 'NaN');

/** Text edits: replace, insert or delete characters of a valid request (JSON and non-JSON alike). */
export const edits = fc.array(
  fc.record({
    at: fc.nat(),
    kind: fc.constantFrom('replace', 'insert', 'delete'),
    text: fc.oneof(
      fc.string({ maxLength: 3 }),
      fc.constantFrom('NaN', 'Infinity', '"', '\\', '[', ']', '{', '-', 'e9999', '\u0000'),
    ),
  }),
  { minLength: 1, maxLength: 6 },
);
export function applyEdits(text: string, list: { at: number; kind: string; text: string }[]): string {
  let s = text;
  for (const e of list) {
    const at = e.at % (s.length + 1);
    if (e.kind === 'insert') s = s.slice(0, at) + e.text + s.slice(at);
    else if (e.kind === 'delete') s = s.slice(0, at) + s.slice(at + e.text.length + 1);
    else s = s.slice(0, at) + e.text + s.slice(at + e.text.length);
  }
  return s;
}
