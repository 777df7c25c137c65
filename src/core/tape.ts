/**
 * The recording side of reverse-mode differentiation: a stack of active tapes, and `recordOp`,
 * which every differentiable op calls after computing its output. `autograd.ts` runs the tapes.
 *
 * A tape tracks the tensors that depend on its parameters. An op is recorded on every active tape
 * that tracks one of its inputs, so the ops that a backward pass runs while an outer tape is active
 * are themselves recorded there (which is what makes nested `grad` work).
 */
import type { Tensor } from "./tensor.js";

/**
 * Given the cotangent of an op's output, returns the cotangent of each input (same shape as that
 * input, f32), or null where `needs[i]` is false or the input has no gradient.
 */
export type BackwardFn = (
  grad: Tensor<"f32">,
  needs: readonly boolean[],
) => readonly (Tensor<"f32"> | null)[];

export interface TapeNode {
  readonly name: string;
  readonly inputs: readonly Tensor[];
  readonly output: Tensor;
  readonly backward: BackwardFn;
}

export class Tape {
  readonly nodes: TapeNode[] = [];
  readonly tracked = new Set<Tensor>();
}

let active: Tape[] = [];

/** True while some `grad` is recording (ops skip building backward closures otherwise). */
export function isRecording(): boolean {
  return active.length > 0;
}

export function recordOp(
  name: string,
  inputs: readonly Tensor[],
  output: Tensor,
  backward: BackwardFn,
): void {
  for (const tape of active) {
    if (inputs.some((t) => tape.tracked.has(t))) {
      tape.nodes.push({ name, inputs, output, backward });
      tape.tracked.add(output);
    }
  }
}

/** Runs `fn` with `tape` recording (on top of any tapes already active). */
export function withTape<T>(tape: Tape, fn: () => T): T {
  active = [...active, tape];
  try {
    return fn();
  } finally {
    active = active.filter((t) => t !== tape);
  }
}

/** Runs `fn` with no tape recording. */
export function withoutRecording<T>(fn: () => T): T {
  const saved = active;
  active = [];
  try {
    return fn();
  } finally {
    active = saved;
  }
}
