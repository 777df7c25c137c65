/** Chat-model analyses: the public API. */
export {
  ablationInterventions,
  additionIntervention,
  type CandidateScores,
  type ChatPromptIds,
  chatPromptIds,
  chooseDirection,
  fitRefusalDirection,
  type MeanDifference,
  meanDifference,
  meanResiduals,
  type RefusalFit,
  refusalScore,
  refusalTokens,
  type Selection as RefusalSelection,
  type SelectionOptions,
  scoreCandidate,
} from "./refusal.js";
