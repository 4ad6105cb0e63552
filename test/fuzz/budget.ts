/**
 * One budget for every property-based test, so CI time stays fixed: a fixed seed (a failure
 * replays exactly; fast-check prints the seed and path to reproduce), a fixed number of runs,
 * and a wall-clock cap after which the property stops early (counted as passed: the runs made
 * were all checked).
 */
import type { Parameters } from 'fast-check';

export const FUZZ_SEED = 20261201;

/** `runs` cases of a property, stopped after `ms` milliseconds. */
export function budget<T>(runs: number, ms = 3_000): Parameters<T> {
  return { seed: FUZZ_SEED, numRuns: runs, interruptAfterTimeLimit: ms };
}
