/**
 * Graph-editing helpers shared by the model rewriters (quantize.ts, fp16.ts, prune.ts).
 *
 * They work on decoded `ModelProto`/`GraphProto` messages in place, so every field a rewriter does
 * not touch (unknown fields, metadata, doc strings, value_info) is written back unchanged by
 * `encodeModel`. Names referenced from subgraphs (If/Loop/Scan bodies may read outer-scope
 * tensors) are treated as used so nothing they need is removed.
 */
import { clone, create } from '@bufbuild/protobuf';
import {
  type AttributeProto,
  AttributeProto_AttributeType,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataType,
  TensorProtoSchema,
  type ValueInfoProto,
} from 'onnx-buf';

/**
 * The default ONNX domain may be spelled '' or 'ai.onnx'.
 * @example
 * isDefaultDomain(node.domain) // true for standard operators
 */
export function isDefaultDomain(domain: string): boolean {
  return domain === '' || domain === 'ai.onnx';
}

/**
 * Initializers of a graph by name.
 * @example
 * const weight = initializerMap(graph).get(node.input[1] ?? '');
 */
export function initializerMap(graph: GraphProto): Map<string, TensorProto> {
  return new Map(graph.initializer.map((t) => [t.name, t]));
}

/** Every tensor name read by nodes of the subgraphs (If/Loop/Scan bodies) of `graph`, recursively. */
function subgraphReads(graph: GraphProto, into: Set<string>): void {
  const visit = (g: GraphProto): void => {
    for (const n of g.node) {
      n.input.forEach((i) => into.add(i));
      n.attribute.forEach((a) => {
        if (a.g) visit(a.g);
        a.graphs.forEach(visit);
      });
    }
  };
  for (const n of graph.node) {
    n.attribute.forEach((a) => {
      if (a.g) visit(a.g);
      a.graphs.forEach(visit);
    });
  }
}

/**
 * Names read anywhere: node inputs of the graph and its subgraphs, and graph outputs.
 * @example
 * if (!usedNames(graph).has(name)) dropIt(name);
 */
export function usedNames(graph: GraphProto): Set<string> {
  const used = new Set<string>();
  graph.node.forEach((n) => n.input.forEach((i) => used.add(i)));
  graph.output.forEach((o) => used.add(o.name));
  subgraphReads(graph, used);
  return used;
}

/**
 * Removes initializers nothing reads any more (after a rewrite replaced them), together with the
 * graph inputs and value_info entries that described them. Returns the removed names.
 * @example
 * const removed = removeUnusedInitializers(model.graph!);
 */
export function removeUnusedInitializers(graph: GraphProto): string[] {
  const used = usedNames(graph);
  const removed = graph.initializer.filter((t) => !used.has(t.name)).map((t) => t.name);
  if (removed.length === 0) return removed;
  const gone = new Set(removed);
  graph.initializer = graph.initializer.filter((t) => !gone.has(t.name));
  graph.input = graph.input.filter((v) => !gone.has(v.name));
  graph.valueInfo = graph.valueInfo.filter((v) => !gone.has(v.name));
  return removed;
}

/**
 * A generator of tensor/node names that collide with nothing in the graph (nor with each other).
 * @example
 * const fresh = uniqueNamer(graph);
 * const q = fresh('input_quantized'); // 'input_quantized', or 'input_quantized_1' if taken
 */
export function uniqueNamer(graph: GraphProto): (base: string) => string {
  const taken = new Set<string>();
  const addGraph = (g: GraphProto): void => {
    g.input.forEach((v) => taken.add(v.name));
    g.output.forEach((v) => taken.add(v.name));
    g.valueInfo.forEach((v) => taken.add(v.name));
    g.initializer.forEach((t) => taken.add(t.name));
    g.sparseInitializer.forEach((s) => taken.add(s.values?.name ?? ''));
    for (const n of g.node) {
      taken.add(n.name);
      n.input.forEach((i) => taken.add(i));
      n.output.forEach((o) => taken.add(o));
      n.attribute.forEach((a) => {
        if (a.g) addGraph(a.g);
        a.graphs.forEach(addGraph);
      });
    }
  };
  addGraph(graph);
  return (base: string): string => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
}

/**
 * An attribute of a node, or undefined.
 * @example
 * const transB = attributeOf(gemm, 'transB')?.i ?? 0n;
 */
export function attributeOf(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name);
}

/**
 * An INT attribute as a number, with a default when absent.
 * @example
 * const group = intAttribute(conv, 'group', 1);
 */
export function intAttribute(node: NodeProto, name: string, fallback: number): number {
  const a = attributeOf(node, name);
  return a && a.type === AttributeProto_AttributeType.INT ? Number(a.i) : fallback;
}

/**
 * A FLOAT attribute, with a default when absent.
 * @example
 * const alpha = floatAttribute(gemm, 'alpha', 1);
 */
export function floatAttribute(node: NodeProto, name: string, fallback: number): number {
  const a = attributeOf(node, name);
  return a && a.type === AttributeProto_AttributeType.FLOAT ? a.f : fallback;
}

/**
 * Makes sure the model imports `domain` (at least `version`), e.g. before adding com.microsoft ops.
 * @example
 * ensureOpsetImport(model, 'com.microsoft', 1);
 */
export function ensureOpsetImport(model: ModelProto, domain: string, version: number): void {
  const found = model.opsetImport.find((o) =>
    isDefaultDomain(domain) ? isDefaultDomain(o.domain) : o.domain === domain,
  );
  if (found) {
    if (found.version < BigInt(version)) found.version = BigInt(version);
    return;
  }
  model.opsetImport.push(create(OperatorSetIdProtoSchema, { domain, version: BigInt(version) }));
}

/**
 * The default-domain opset version the model imports (0 when it imports none).
 * @example
 * if (defaultOpset(model) < 13) throw new Error('per-channel DequantizeLinear needs opset 13');
 */
export function defaultOpset(model: ModelProto): number {
  const found = model.opsetImport.find((o) => isDefaultDomain(o.domain));
  return found ? Number(found.version) : 0;
}

/**
 * Sets (adds or replaces) one metadata_props entry; other entries keep their order.
 * @example
 * setMetadataProp(model, 'maas.optimization', JSON.stringify({ technique: 'int8' }));
 */
export function setMetadataProp(model: ModelProto, key: string, value: string): void {
  const found = model.metadataProps.find((p) => p.key === key);
  if (found) found.value = value;
  else model.metadataProps.push(create(StringStringEntryProtoSchema, { key, value }));
}

/**
 * Element type (ONNX TensorProto.DataType number) recorded in a tensor ValueInfo, or undefined.
 * @example
 * const isFloat = elemTypeOf(graph.input[0]!) === TensorProto_DataType.FLOAT;
 */
export function elemTypeOf(value: ValueInfoProto): number | undefined {
  const t = value.type?.value;
  return t?.case === 'tensorType' ? t.value.elemType : undefined;
}

/**
 * Sets the element type of a tensor ValueInfo (no-op for non-tensor types).
 * @example
 * setElemType(valueInfo, TensorProto_DataType.FLOAT16);
 */
export function setElemType(value: ValueInfoProto, elemType: number): void {
  const t = value.type?.value;
  if (t?.case === 'tensorType') t.value.elemType = elemType;
}

/**
 * Operator types of every node in the model, as 'domain:Op' outside the default domain.
 * @example
 * const contrib = operatorsOf(model).filter((op) => op.includes(':'));
 */
export function operatorsOf(model: ModelProto): string[] {
  const ops = new Set<string>();
  const visit = (g: GraphProto): void => {
    for (const n of g.node) {
      ops.add(isDefaultDomain(n.domain) ? n.opType : `${n.domain}:${n.opType}`);
      n.attribute.forEach((a) => {
        if (a.g) visit(a.g);
        a.graphs.forEach(visit);
      });
    }
  };
  if (model.graph) visit(model.graph);
  model.functions.forEach((f) =>
    f.node.forEach((n) => ops.add(isDefaultDomain(n.domain) ? n.opType : `${n.domain}:${n.opType}`)),
  );
  return [...ops].sort();
}

/**
 * The subgraphs (If branches, Loop/Scan bodies) held by a node's attributes.
 * @example
 * for (const body of subgraphsOf(ifNode)) rewrite(body);
 */
export function subgraphsOf(node: NodeProto): GraphProto[] {
  const out: GraphProto[] = [];
  for (const a of node.attribute) {
    if (a.g) out.push(a.g);
    out.push(...a.graphs);
  }
  return out;
}

/**
 * Calls `visit` on `graph` and then on every subgraph below it, depth first (bodies after the graph
 * holding them).
 * @example
 * forEachGraph(model.graph!, (g) => constantsToInitializers(g));
 */
export function forEachGraph(
  graph: GraphProto,
  visit: (g: GraphProto, depth: number) => void,
  depth = 0,
): void {
  visit(graph, depth);
  for (const n of graph.node) for (const body of subgraphsOf(n)) forEachGraph(body, visit, depth + 1);
}

/**
 * Turns `Constant` nodes holding a tensor (`value`, `value_float(s)`, `value_int(s)`) into
 * initializers of the graph they sit in, in this graph and every subgraph. Exporters such as
 * paddle2onnx store every weight that way; onnxruntime folds them the same way at load time, so
 * this changes nothing about what runs, but lets the rewriters see weights as initializers.
 * Constants whose output is also a graph output stay (an output must be produced by a node).
 * Returns how many were converted.
 * @example
 * constantsToInitializers(model.graph!); // Conv weights of a paddle2onnx export are now initializers
 */
export function constantsToInitializers(graph: GraphProto): number {
  let converted = 0;
  forEachGraph(graph, (g) => {
    const outputs = new Set(g.output.map((o) => o.name));
    const keep: NodeProto[] = [];
    for (const n of g.node) {
      const tensor = n.opType === 'Constant' && isDefaultDomain(n.domain) ? constantTensor(n) : undefined;
      const out = n.output[0] ?? '';
      if (!tensor || outputs.has(out) || n.output.length !== 1) {
        keep.push(n);
        continue;
      }
      tensor.name = out;
      g.initializer.push(tensor);
      converted += 1;
    }
    g.node = keep;
  });
  return converted;
}

function constantTensor(node: NodeProto): TensorProto | undefined {
  const a = node.attribute[0];
  if (!a || node.attribute.length !== 1) return undefined;
  const T = AttributeProto_AttributeType;
  const make = (dataType: number, dims: bigint[], fill: (t: TensorProto) => void): TensorProto => {
    const t = create(TensorProtoSchema, { dataType, dims });
    fill(t);
    return t;
  };
  // clone, not spread: decoded messages keep unset fields' defaults on their prototype.
  if (a.name === 'value' && a.t) return clone(TensorProtoSchema, a.t);
  if (a.name === 'value_float' && a.type === T.FLOAT)
    return make(TensorProto_DataType.FLOAT, [], (t) => t.floatData.push(a.f));
  if (a.name === 'value_floats' && a.type === T.FLOATS)
    return make(TensorProto_DataType.FLOAT, [BigInt(a.floats.length)], (t) => t.floatData.push(...a.floats));
  if (a.name === 'value_int' && a.type === T.INT)
    return make(TensorProto_DataType.INT64, [], (t) => t.int64Data.push(a.i));
  if (a.name === 'value_ints' && a.type === T.INTS)
    return make(TensorProto_DataType.INT64, [BigInt(a.ints.length)], (t) => t.int64Data.push(...a.ints));
  return undefined;
}
