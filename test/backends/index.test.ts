// Backend selection: GLASSBOX_BACKEND handling, the one-line fallback warning, laziness.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  availableBackends,
  chooseBackend,
  defaultBackend,
  referenceBackend,
} from "../../src/backends/index.js";
import type { Backend } from "../../src/core/backend.js";
import { BackendError } from "../../src/core/errors.js";

const fakeNative: Backend = { ...referenceBackend, name: "native" };
const works = () => ({ backend: fakeNative });
const broken = () => ({ error: "addon missing: build/Release/glassbox_native.node" });

test("chooseBackend: automatic, forced and invalid choices", () => {
  assert.equal(chooseBackend(undefined, works).backend, fakeNative);
  assert.equal(chooseBackend("", works).warning, null);
  const fallback = chooseBackend(undefined, broken);
  assert.equal(fallback.backend, referenceBackend);
  assert.match(fallback.warning ?? "", /native backend unavailable \(addon missing: .*\)/);
  assert.ok(!(fallback.warning ?? "").includes("\n"), "one line");
  let loaded = false;
  const forcedRef = chooseBackend("reference", () => {
    loaded = true;
    return works();
  });
  assert.equal(forcedRef.backend, referenceBackend);
  assert.equal(loaded, false, "forcing reference must not load the addon");
  assert.equal(chooseBackend("native", works).backend, fakeNative);
  assert.throws(
    () => chooseBackend("native", broken),
    (e: unknown) => {
      return (
        e instanceof BackendError && /native backend requested but unavailable: addon missing/.test(e.message)
      );
    },
  );
  assert.throws(() => chooseBackend("gpu", works), /unknown backend "gpu"/);
});

test("defaultBackend is stable and among the available backends", () => {
  const b = defaultBackend();
  assert.equal(defaultBackend(), b);
  assert.ok(availableBackends().includes(b));
  assert.equal(availableBackends()[0], referenceBackend);
});

test("importing chooses nothing; the first call writes at most one line to stderr", () => {
  const here = fileURLToPath(import.meta.url);
  const fromSource = here.endsWith(".ts");
  const module = new URL(`../../src/backends/index.${fromSource ? "ts" : "js"}`, import.meta.url).href;
  const run = (script: string, env: Record<string, string>) =>
    spawnSync(
      process.execPath,
      [...(fromSource ? ["--import", "tsx"] : []), "--input-type=module", "-e", script],
      {
        env: { ...process.env, ...env },
        encoding: "utf8",
      },
    );
  const quiet = run(`await import(${JSON.stringify(module)});`, { GLASSBOX_BACKEND: "" });
  assert.equal(quiet.status, 0, quiet.stderr);
  assert.equal(quiet.stderr, "", "import alone must not choose a backend");
  const first = run(
    `const m = await import(${JSON.stringify(module)}); const b = m.defaultBackend(); m.defaultBackend(); console.log(b.name, m.availableBackends().length);`,
    { GLASSBOX_BACKEND: "" },
  );
  assert.equal(first.status, 0, first.stderr);
  const [name, count] = first.stdout.trim().split(" ");
  const lines = first.stderr.split("\n").filter((l) => l !== "");
  if (count === "2") {
    assert.equal(name, "native");
    assert.equal(lines.length, 0);
  } else {
    assert.equal(name, "reference");
    assert.equal(lines.length, 1, first.stderr);
    assert.match(lines[0], /native backend unavailable/);
  }
  const forced = run(
    `const m = await import(${JSON.stringify(module)}); console.log(m.defaultBackend().name);`,
    {
      GLASSBOX_BACKEND: "reference",
    },
  );
  assert.equal(forced.stdout.trim(), "reference");
  assert.equal(forced.stderr, "");
});
