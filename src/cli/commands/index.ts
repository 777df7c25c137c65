/** Registers every subcommand. Add a command by writing `commands/<name>.ts` and listing it here. */
import type { Command } from "commander";
import { registerActivations } from "./activations.js";
import { registerCot } from "./cot.js";
import { registerData } from "./data.js";
import { registerDemo } from "./demo.js";
import { registerDict } from "./dict.js";
import { registerEval } from "./eval.js";
import { registerFeatures } from "./features.js";
import { registerGenerate } from "./generate.js";
import { registerGraph } from "./graph.js";
import { registerHarvest } from "./harvest.js";
import { registerJailbreak } from "./jailbreak.js";
import { registerLogits } from "./logits.js";
import { registerRefusal } from "./refusal.js";
import { registerSafetensors } from "./safetensors.js";
import { registerSites } from "./sites.js";
import { registerSteer } from "./steer.js";
import { registerTrain } from "./train.js";
import { registerVector } from "./vector.js";

export function registerCommands(program: Command): void {
  registerData(program);
  registerDict(program);
  registerFeatures(program);
  registerSafetensors(program);
  registerGenerate(program);
  registerSteer(program);
  registerGraph(program);
  registerLogits(program);
  registerActivations(program);
  registerSites(program);
  registerHarvest(program);
  registerEval(program);
  registerTrain(program);
  registerRefusal(program);
  registerVector(program);
  registerJailbreak(program);
  registerCot(program);
  registerDemo(program);
}
