/**
 * Explanations of predictions (model-agnostic: forward passes only). See docs/api/predict.md.
 */
export * from './config';
export * from './kernel-shap';
export * from './masked-model';
export * from './occlusion';
export * from './service';
