/** Registers every subcommand. Add a command by writing `commands/<name>.ts` and listing it here. */
import type { Command } from "commander";
import { registerData } from "./data.js";
import { registerDict } from "./dict.js";
import { registerSafetensors } from "./safetensors.js";

export function registerCommands(program: Command): void {
  registerData(program);
  registerDict(program);
  registerSafetensors(program);
}
