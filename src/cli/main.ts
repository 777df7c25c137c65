#!/usr/bin/env node
/**
 * The `glassbox` command. Each subcommand lives in `src/cli/commands/` and registers itself on the
 * program; this file only wires them up and turns errors into one line on stderr and exit code 1.
 */
import { Command, CommanderError } from "commander";
import { limitYoungGeneration, optimizeHeapForSize } from "../backends/native/young-generation.js";
import { GlassboxError } from "../core/errors.js";
import { registerCommands } from "./commands/index.js";

/** Commands that run the model and nothing heavier in JS: V8 favours memory over speed for them. */
const MODEL_COMMANDS = new Set(["generate", "logits", "activations"]);

export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command("glassbox")
    .description("Interpretability for Gemma 3: hook sites, sparse dictionaries, training and evaluation.")
    .option("--debug", "print stack traces for errors")
    // a command's options go to the (sub)command named before them: `features build --model M`
    // gives --model to `build` although `features` has a --model of its own
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerCommands(program);
  program.hook("preAction", (_program, action) => {
    if (MODEL_COMMANDS.has(action.name())) optimizeHeapForSize();
  });
  try {
    // --debug is read from argv (below) wherever it stands; positional options would give it to the subcommand
    await program.parseAsync(
      argv.filter((a) => a !== "--debug"),
      { from: "user" },
    );
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 1;
    const debug = argv.includes("--debug");
    if (err instanceof GlassboxError) {
      process.stderr.write(`glassbox: ${err.message}\n`);
      if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
      return 1;
    }
    const e = err instanceof Error ? err : new Error(String(err));
    process.stderr.write(`glassbox: internal error: ${e.message}\n`);
    if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

// A command may run thousands of forward passes: a young generation grown to 32 MiB is memory the
// model needs more (src/backends/native/young-generation.ts).
limitYoungGeneration();
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`glassbox: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
