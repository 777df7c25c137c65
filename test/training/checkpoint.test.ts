// Checkpoints: a run interrupted and resumed equals an uninterrupted one bit for bit (in process,
// and after kill -9 of a child process mid-run), and bad checkpoints or other data are refused.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { defaultBackend } from "../../src/backends/index.js";
import { TrainingError } from "../../src/core/errors.js";
import { CHECKPOINT_FILE, readCheckpoint } from "../../src/training/checkpoint.js";
import { PlantedSource } from "../../src/training/synthetic.js";
import { METRICS_FILE, Trainer } from "../../src/training/trainer.js";
import { openSmall, smallConfig, spawnTraining } from "./helpers.js";

const dirs: string[] = [];
function fresh(): string {
  const d = mkdtempSync(join(tmpdir(), "glassbox-train-"));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Every checkpointed array of every dictionary, plus non-array state. */
function snapshot(t: Trainer): Map<string, Float32Array | Float64Array | string> {
  const out = new Map<string, Float32Array | Float64Array | string>();
  for (const [id, c] of t.coders) {
    for (const [name, a] of c.checkpointArrays()) out.set(`${id}/${name}`, a.data.slice());
    out.set(`${id}/state`, JSON.stringify(c.state()));
  }
  out.set("scales", JSON.stringify([...t.scales]));
  return out;
}

function assertSame(a: Map<string, Float32Array | Float64Array | string>, b: typeof a): void {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [k, v] of a) {
    const w = b.get(k);
    if (typeof v === "string") assert.equal(w, v, k);
    else {
      assert.ok(w instanceof v.constructor, k);
      const wv = w as typeof v;
      for (let i = 0; i < v.length; i++)
        if (!Object.is(v[i], wv[i])) assert.fail(`${k}[${i}]: ${v[i]} vs ${wv[i]}`);
    }
  }
}

const losses = (dir: string) =>
  readFileSync(join(dir, METRICS_FILE), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { step: number; dictionaries: Record<string, { loss: number }> })
    .map((l) => [l.step, ...Object.values(l.dictionaries).map((d) => d.loss)]);

const N = 40;

test("N steps straight equal N/2, a new process-like start from the checkpoint, then N/2 more", async () => {
  const straightDir = fresh();
  const straight = await openSmall(straightDir, N, 10);
  await straight.run();
  const want = snapshot(straight);

  const dir = fresh();
  const first = await openSmall(dir, N, 10);
  assert.equal(first.resumed, false);
  await first.run(N / 2 + 3); // stops at step 23; the last checkpoint is step 20... and 23 at the stop
  const resumed = await openSmall(dir, N, 10);
  assert.equal(resumed.resumed, true);
  assert.equal(resumed.step, N / 2 + 3);
  await resumed.run();
  assert.equal(resumed.step, N);
  assertSame(snapshot(resumed), want);
  // The metrics log continues seamlessly: the same losses at every step.
  assert.deepEqual(losses(dir), losses(straightDir));
  // Running again after the end does nothing.
  const again = await openSmall(dir, N, 10);
  assert.equal((await again.run()).steps, N);
  assertSame(snapshot(again), want);
});

test("kill -9 mid-run, then resume: nothing before the last checkpoint is lost, the result is exact", async () => {
  const steps = 400;
  const straight = await openSmall(null, steps, 5);
  await straight.run();
  const want = snapshot(straight);

  const dir = fresh();
  const child = spawnTraining(dir, steps, 5);
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<string | null>((res) => child.on("close", (_code, signal) => res(signal)));
  let seen = 0;
  while (seen < 25 && child.exitCode === null) {
    await new Promise((r) => setTimeout(r, 5));
    try {
      const ck = readCheckpoint(dir);
      seen = ck?.state.step ?? 0;
      ck?.close();
    } catch {
      // A reader may race the rename; the next poll sees a whole file.
    }
  }
  child.kill("SIGKILL");
  assert.equal(await exited, "SIGKILL", `the child finished before it was killed: ${out}`);
  const resumed = await openSmall(dir, steps, 5);
  assert.ok(resumed.resumed);
  assert.ok(resumed.step >= seen && resumed.step < steps, `resumed at ${resumed.step}, saw ${seen}`);
  await resumed.run();
  assertSame(snapshot(resumed), want);
  const temps = readdirSync(dir).filter((f) => f !== CHECKPOINT_FILE && f !== METRICS_FILE);
  assert.ok(
    temps.every((f) => f.startsWith(".")),
    `unexpected files ${temps}`,
  );
});

test("resuming refuses another configuration, other data and a corrupt checkpoint", async () => {
  const dir = fresh();
  await (await openSmall(dir, 6, 3)).run();
  const backend = defaultBackend();
  const base = smallConfig(6, 3);
  const other = { ...base, dictionaries: base.dictionaries.map((d) => ({ ...d, lr: 1e-3 })) };
  await assert.rejects(
    Trainer.open({
      backend,
      source: new PlantedSource({ d: 16, features: 32, meanL0: 3, kind: "transcoder", seed: 7, skip: 0.3 }),
      config: other,
      outDir: dir,
    }),
    (e: unknown) => e instanceof TrainingError && /another configuration/.test(e.message),
  );
  await assert.rejects(
    Trainer.open({
      backend,
      source: new PlantedSource({ d: 16, features: 32, meanL0: 3, kind: "transcoder", seed: 8, skip: 0.3 }),
      config: base,
      outDir: dir,
    }),
    (e: unknown) => e instanceof TrainingError && /other data/.test(e.message),
  );
  // More steps are fine: the run continues.
  const longer = await openSmall(dir, 9, 3);
  assert.equal((await longer.run()).steps, 9);
  writeFileSync(join(dir, CHECKPOINT_FILE), "not a checkpoint");
  await assert.rejects(
    openSmall(dir, 9, 3),
    (e: unknown) => e instanceof TrainingError && /checkpoint/.test(e.message),
  );
});
