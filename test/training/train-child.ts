/** Child process for the kill -9 test: trains the small run of helpers.ts (argv: DIR STEPS EVERY). */
import { openSmall } from "./helpers.js";

const [dir, steps, every] = process.argv.slice(2);
openSmall(dir, Number(steps), Number(every))
  .then((t) => t.run())
  .then(
    (r) => process.stdout.write(`done ${r.steps}\n`),
    (e: unknown) => {
      process.stdout.write(`${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}\n`);
      process.exitCode = 1;
    },
  );
