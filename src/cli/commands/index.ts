/** Registers every subcommand. Add a command by writing `commands/<name>.ts` and listing it here. */
import type { Command } from "commander";

export function registerCommands(_program: Command): void {}
