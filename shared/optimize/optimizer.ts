/**
 * One optimization run: build every requested candidate from a registered version, evaluate each
 * against the parent in this process, gate it, and register those that pass as new versions with
 * their lineage. Candidates are independent: one failing to build does not stop the others.
 */
import { MaasError } from '../errors';
import { type ModelRegistry, type ModelVersion, type RegisterOptions, versionFiles } from '../registry';
import type { ObjectStore } from '../store';
import {
  artifactFiles,
  createSession,
  disposeArtifact,
  type ModelArtifact,
  writeModelArtifact,
} from './artifacts';
import type { CapturedPromptsProvider } from './captured';
import {
  type EvaluateOptions,
  type EvaluationReport,
  evaluateCandidate,
  evaluationSessionOptions,
  measureLoadMs,
} from './evaluate';
import { type GateDecision, gate } from './gate';
import {
  type CapturedInputsProvider,
  type EvaluationInputs,
  noCapturedInputs,
  resolveEvaluationInputs,
  splitForCalibration,
} from './inputs';
import { openParentModel, type ParentModel } from './parent';
import type { OptimizeRequest } from './request';
import { DEFAULT_CALIBRATION_ROWS, type StepDetails, transformCandidate } from './techniques';
import { readTextCompanions, textEvaluationInputs } from './text-inputs';

/** What happened to one candidate. */
export interface CandidateOutcome {
  technique: string;
  /** registered: passed the gate and stored; rejected: measured and refused; failed: could not be built or run. */
  status: 'registered' | 'rejected' | 'failed';
  parameters?: Record<string, unknown>;
  steps?: StepDetails[];
  runtimeSpecificOps?: string[];
  evaluation?: EvaluationReport;
  gate?: GateDecision;
  /** The version it was registered as (status registered). */
  version?: number;
  /** False when identical bytes were already registered (that version is reported). */
  created?: boolean;
  error?: string;
}

/** The report of one optimization run (stored in the job record). */
export interface OptimizationReport {
  model: string;
  parentVersion: number;
  parentSha256: string;
  inputs: { source: string; samples: number; seed?: number; key?: string };
  candidates: CandidateOutcome[];
  /** The alias moved to the best registered candidate, if one was requested and any passed. */
  alias?: { name: string; version: number };
  startedAt: string;
  finishedAt: string;
}

/** Options of {@link optimizeVersion}. */
export interface OptimizeOptions {
  /** Where reference inputs named by a store key are read (the function runtime's store). */
  store: ObjectStore;
  /** Hook for captured traffic samples (default: none yet, see inputs.ts). */
  capturedInputs?: CapturedInputsProvider;
  /** Captured prompts for text-generation parents (used when the request names no `evaluation.prompts`). */
  capturedPrompts?: CapturedPromptsProvider;
  /** Evaluation knobs (iterations per batch size etc.); a request's `evaluation.iterations` wins. */
  evaluate?: EvaluateOptions;
  /** Job id, recorded in lineage. */
  jobId?: string;
  actor?: string;
  /** Progress callback (e.g. to log), called after each candidate. */
  onCandidate?: (outcome: CandidateOutcome) => void;
  /**
   * Candidates whose one-file encoding would reach this size are written and registered as
   * bundles (graph plus one data file) instead. Default: protobuf's 2 GiB limit.
   */
  inlineLimitBytes?: number;
  /** Where a bundle parent and bundle candidates are laid out (default the OS temp dir: `/tmp` on Lambda). */
  workDir?: string;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Best registered candidate for the alias: fastest p50 at batch 1 (cold, interactive traffic), then smallest. */
function best(outcomes: CandidateOutcome[]): CandidateOutcome | undefined {
  const score = (o: CandidateOutcome): [number, number] => [
    o.evaluation?.latency[0]?.ratio ?? 1,
    o.evaluation?.size.ratio ?? 1,
  ];
  return outcomes
    .filter((o) => o.status === 'registered')
    .sort((a, b) => {
      const [la, sa] = score(a);
      const [lb, sb] = score(b);
      return la - lb || sa - sb;
    })[0];
}

/**
 * Optimizes one registered version as `request` asks and returns the report.
 * Throws only for problems with the whole run (unknown version, unusable reference inputs);
 * per-candidate problems are reported in `candidates`.
 *
 * @example
 * const report = await optimizeVersion(registry, 'mlp', 1, parseOptimizeRequest({ techniques: ['int8'], alias: 'staging' }), { store });
 * console.log(report.candidates.map((c) => `${c.technique}: ${c.status}`));
 */
export async function optimizeVersion(
  registry: ModelRegistry,
  model: string,
  version: number,
  request: OptimizeRequest,
  options: OptimizeOptions,
): Promise<OptimizationReport> {
  const startedAt = new Date().toISOString();
  const parent = await registry.getVersion(model, version);
  // Verified read (every file of a bundle): a tampered parent fails here (IntegrityError) before
  // any candidate is built. A bundle is laid out in a folder and loaded by path (parent.ts).
  const parentModel = await openParentModel(registry, parent, { workDir: options.workDir });
  try {
    return await optimizeParent(registry, parent, parentModel, request, options, startedAt);
  } finally {
    await parentModel.dispose();
  }
}

async function optimizeParent(
  registry: ModelRegistry,
  parent: ModelVersion,
  parentModel: ParentModel,
  request: OptimizeRequest,
  options: OptimizeOptions,
  startedAt: string,
): Promise<OptimizationReport> {
  const { name: model, version } = parent;
  // Parent and candidates are measured with the options they are served with (generate's for a text model).
  const sessionOptions = evaluationSessionOptions({ textGeneration: parent.textGeneration !== undefined });
  const parentSession = await createSession(parentModel.artifact, sessionOptions);
  // A text model is evaluated on its own tokenizer's prompts (next-token agreement, logits cosine)
  // and its candidates keep the tokenizer files: they are registered as bundles like the parent.
  const textFiles = parent.textGeneration ? versionFiles(parent).filter((f) => f.role === 'companion') : [];
  let inputs: EvaluationInputs;
  try {
    // A text model: the request's prompts, else what its users asked (captured), else the built-in ones.
    const captured =
      parent.textGeneration && !request.evaluation.prompts
        ? await options.capturedPrompts?.(model)
        : undefined;
    inputs = parent.textGeneration
      ? textEvaluationInputs(
          parentSession,
          versionFiles(parent).map((f) => f.name),
          await readTextCompanions(registry, parent),
          request.evaluation.prompts ?? captured,
          captured ? 'captured' : 'prompts',
        )
      : await resolveEvaluationInputs(parent.onnx.inputs, {
          store: options.store,
          model,
          version,
          reference: request.referenceInputs,
          capturedInputs: options.capturedInputs ?? noCapturedInputs,
          options: request.evaluation,
        });
  } catch (error) {
    await parentSession.release();
    throw error;
  }
  const evaluateOptions: EvaluateOptions = {
    ...options.evaluate,
    ...(request.evaluation.iterations ? { iterations: request.evaluation.iterations } : {}),
    sessionOptions,
  };
  const parentLoadMs = await measureLoadMs(
    parentModel.artifact,
    evaluateOptions.loadRuns ?? 3,
    sessionOptions,
  );
  const graph = versionFiles(parent).find((f) => f.role === 'graph')?.name ?? 'model.onnx';
  const outcomes: CandidateOutcome[] = [];
  const passed: { outcome: CandidateOutcome; artifact: ModelArtifact }[] = [];
  try {
    for (const technique of request.techniques) {
      const outcome: CandidateOutcome = { technique, status: 'failed' };
      // A calibrated candidate is measured on rows it was not calibrated on, when there are enough.
      const calibrating = technique.split('+').includes('int8-static')
        ? splitForCalibration(inputs, request.parameters['int8-static']?.samples ?? DEFAULT_CALIBRATION_ROWS)
        : undefined;
      let artifact: ModelArtifact | undefined;
      try {
        const { model: built, ...candidate } = await transformCandidate(
          await parentModel.decode(),
          technique,
          request.parameters,
          { model, version, sha256: parent.sha256 },
          // int8-static calibrates on the evaluation inputs (captured traffic when there is some).
          calibrating
            ? {
                calibration: calibrating.calibration,
                calibrationSource: inputs.source,
                calibrationHeldOut: calibrating.heldOut,
                sessionOptions,
              }
            : { sessionOptions },
        );
        Object.assign(outcome, {
          parameters: candidate.parameters,
          steps: candidate.details,
          runtimeSpecificOps: candidate.runtimeSpecificOps,
        });
        artifact = await writeModelArtifact(built, {
          graphName: graph,
          inlineLimitBytes: options.inlineLimitBytes,
          workDir: options.workDir,
        });
        outcome.evaluation = await evaluateCandidate(
          { model: parentModel.artifact, session: parentSession, loadMs: parentLoadMs },
          artifact,
          calibrating?.evaluation ?? inputs,
          evaluateOptions,
        );
        outcome.gate = gate(outcome.evaluation, request.tolerances, {
          technique,
          textGeneration: parent.textGeneration !== undefined,
        });
        outcome.status = outcome.gate.passed ? 'registered' : 'rejected';
        if (outcome.gate.passed) {
          passed.push({ outcome, artifact });
          artifact = undefined; // kept (a folder stays on disk) until it is registered
        }
      } catch (e) {
        outcome.status = 'failed';
        outcome.error =
          e instanceof MaasError ? e.message : `could not build or run the candidate: ${errorMessage(e)}`;
      } finally {
        await disposeArtifact(artifact);
      }
      outcomes.push(outcome);
    }
  } catch (error) {
    await Promise.all(passed.map((p) => disposeArtifact(p.artifact)));
    throw error;
  } finally {
    await parentSession.release();
  }

  // Register after all evaluations so the alias goes to the best candidate in one move.
  const chosen = request.alias ? best(passed.map((p) => p.outcome)) : undefined;
  let alias: OptimizationReport['alias'];
  for (const { outcome, artifact } of passed) {
    try {
      const companions = textFiles.map((f) => ({ name: f.name, storeKey: f.blobKey, size: f.size }));
      const register = (o: RegisterOptions) =>
        !(artifact instanceof Uint8Array)
          ? registry.registerBundle(model, [...artifactFiles(artifact), ...companions], o)
          : companions.length > 0
            ? registry.registerBundle(model, [{ name: graph, body: artifact }, ...companions], o)
            : registry.registerVersion(model, artifact, o);
      const { version: registered, created } = await register({
        parentVersion: version,
        source: 'optimize',
        actor: options.actor ?? 'optimize',
        reason: `optimize ${outcome.technique} of version ${version}${options.jobId ? ` (job ${options.jobId})` : ''}`,
        description: `${outcome.technique} optimization of version ${version}`,
        force: false,
        optimization: {
          technique: outcome.technique,
          parameters: outcome.parameters ?? {},
          report: {
            ...(options.jobId ? { job: options.jobId } : {}),
            evaluation: outcome.evaluation,
            gate: outcome.gate,
            steps: outcome.steps,
            runtimeSpecificOps: outcome.runtimeSpecificOps ?? [],
            tolerances: request.tolerances,
          } as unknown as Record<string, unknown>,
        },
        ...(chosen === outcome && request.alias ? { alias: request.alias } : {}),
      });
      outcome.version = registered.version;
      outcome.created = created;
      if (chosen === outcome && request.alias) alias = { name: request.alias, version: registered.version };
    } catch (e) {
      outcome.status = 'failed';
      outcome.error = `passed the gate but could not be registered: ${errorMessage(e)}`;
    } finally {
      await disposeArtifact(artifact);
    }
    options.onCandidate?.(outcome);
  }
  const finishedAt = new Date().toISOString();
  // One history entry per run whatever its outcome (published as `optimization.finished`).
  await registry.appendEvent(model, {
    type: 'optimization_finished',
    time: finishedAt,
    actor: options.actor ?? 'optimize',
    version,
    details: {
      ...(options.jobId ? { job: options.jobId } : {}),
      candidates: outcomes.map((c) => ({
        technique: c.technique,
        status: c.status,
        ...(c.version !== undefined ? { version: c.version } : {}),
      })),
      ...(alias ? { alias } : {}),
    },
  });
  return {
    model,
    parentVersion: version,
    parentSha256: parent.sha256,
    inputs: {
      source: inputs.source,
      samples: inputs.samples,
      ...(inputs.seed !== undefined ? { seed: inputs.seed } : {}),
      ...(inputs.key ? { key: inputs.key } : {}),
    },
    candidates: outcomes,
    ...(alias ? { alias } : {}),
    startedAt,
    finishedAt,
  };
}
