/** The activation rules a dictionary can be trained with, by the `kind` of their JSON spec. */
import { BatchTopKRule, type BatchTopKSpec } from "./batchtopk.js";
import { JumpReluRule, type JumpReluSpec } from "./jumprelu.js";
import type { ActivationRule } from "./rule.js";
import { TopKRule, type TopKSpec } from "./topk.js";

export type RuleSpec = JumpReluSpec | TopKSpec | BatchTopKSpec;

export function makeRule(spec: RuleSpec, width: number): ActivationRule {
  switch (spec.kind) {
    case "jumprelu":
      return new JumpReluRule(spec, width);
    case "topk":
      return new TopKRule(spec, width);
    case "batchtopk":
      return new BatchTopKRule(spec, width);
  }
}

/** The rule's L0 target (recorded as the export's `l0`). */
export function targetL0(spec: RuleSpec): number {
  return spec.kind === "jumprelu" ? spec.targetL0 : spec.k;
}
