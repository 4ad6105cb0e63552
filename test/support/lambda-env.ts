/**
 * glibc's allocator settings every function gets from serverless.yml (`provider.environment`),
 * as test/deploy/package.test.ts asserts: tests that measure a container's memory run their
 * child processes with them, as Lambda starts the runtime.
 *
 * `MALLOC_MMAP_THRESHOLD_` fixes the size from which allocations are mmap'ed (and unmapped when
 * freed) at glibc's initial 128 KiB; by default glibc raises it after large frees, so that
 * onnxruntime's freed activation buffers would stay in the heap, resident, after each run.
 */
export const LAMBDA_MALLOC_ENV = { MALLOC_MMAP_THRESHOLD_: '131072' } as const;
