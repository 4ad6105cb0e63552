/**
 * Occlusion (Zeiler & Fergus 2014) for image-shaped inputs: slide a patch over the two trailing
 * (spatial) dimensions, replace it with the baseline across every leading (channel) dimension,
 * and attribute to each element the drop of the explained output, f(x) − f(x with its patch
 * occluded). Patches tile the image without overlap (stride = patch size); edge patches are
 * cut to the image.
 */
import { fullMask, type MaskedModel } from './masked-model';

/** Spatial layout of an instance: trailing two dimensions are height and width. */
export interface ImageLayout {
  /** Product of the leading dimensions (channels; 1 for a plain 2-D input). */
  channels: number;
  height: number;
  width: number;
}

/**
 * The element indices of each patch of an instance, row-major over the patch grid.
 * @example
 * occlusionPatches({ channels: 1, height: 4, width: 4 }, 2).length // 4
 */
export function occlusionPatches(layout: ImageLayout, patch: number): Int32Array[] {
  const { channels, height, width } = layout;
  const groups: Int32Array[] = [];
  for (let top = 0; top < height; top += patch) {
    for (let left = 0; left < width; left += patch) {
      const h = Math.min(patch, height - top);
      const w = Math.min(patch, width - left);
      const g = new Int32Array(channels * h * w);
      let n = 0;
      for (let c = 0; c < channels; c++)
        for (let i = top; i < top + h; i++)
          for (let j = left; j < left + w; j++) g[n++] = (c * height + i) * width + j;
      groups.push(g);
    }
  }
  return groups;
}

/** Patches a layout splits into at a patch size. */
export function patchCount(layout: ImageLayout, patch: number): number {
  return Math.ceil(layout.height / patch) * Math.ceil(layout.width / patch);
}

/** Result of {@link occlusion}. */
export interface OcclusionResult {
  /** One value per instance element (every element of a patch gets that patch's drop). */
  attributions: Float64Array;
  /** The drop per patch, row-major over the patch grid. */
  patchDrops: Float64Array;
  prediction: number;
  /** f(baseline) */
  expectedValue: number;
  samples: number;
}

/**
 * Runs occlusion over the model's features, which must be {@link occlusionPatches} of the instance.
 * @example
 * ```ts
 * const { attributions } = await occlusion(maskedModel, patches, elementCount);
 * ```
 */
export async function occlusion(
  model: MaskedModel,
  patches: readonly Int32Array[],
  elements: number,
): Promise<OcclusionResult> {
  const P = patches.length;
  const masks = patches.map((_, p) => {
    const m = fullMask(P, true);
    m[p] = 0;
    return m;
  });
  const values = await model.evaluate([fullMask(P, true), fullMask(P, false), ...masks]);
  const prediction = values[0]!;
  const patchDrops = new Float64Array(P);
  const attributions = new Float64Array(elements);
  for (let p = 0; p < P; p++) {
    const drop = prediction - values[p + 2]!;
    patchDrops[p] = drop;
    const g = patches[p]!;
    for (let k = 0; k < g.length; k++) attributions[g[k]!] = drop;
  }
  return { attributions, patchDrops, prediction, expectedValue: values[1]!, samples: P };
}
