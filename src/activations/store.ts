/**
 * The activation store: a folder of `manifest.json` plus sharded safetensors
 * (`shard_00000.safetensors`, ...), each shard holding one [tokens, d] tensor per site (f32, bf16
 * or f16) and the `token_ids`, `positions` and `doc_ids` [tokens] (i32) the rows came from.
 *
 * Crash safety (see docs/activations.md): a shard is written to a temporary file, fsynced and
 * renamed into place; only then is the manifest rewritten the same way to list it. A process
 * killed at any moment therefore leaves either the old manifest (the new shard, if it exists, is
 * unlisted and gets overwritten on resume) or the new one; leftover temporary files are removed
 * when a writer next opens the store. A `.lock` file holding the writer's pid keeps two writers
 * apart; a lock whose process is gone is taken over.
 */
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { GlassboxError, StoreError } from "../core/errors.js";
import { f16ToF32, f32ToF16 } from "../core/half.js";
import { writeFileAtomicSync } from "../io/atomic-file.js";
import { ioMessage } from "../io/positioned-read.js";
import { SafetensorsFile } from "../io/safetensors.js";
import type { SafetensorsDType } from "../io/safetensors-dtype.js";
import { type TensorToWrite, writeSafetensors } from "../io/safetensors-write.js";
import type { JsonValue } from "../io/strict-json.js";
import {
  canonicalJson,
  contentHash,
  DOC_IDS,
  type HarvestCursor,
  MANIFEST_FILE,
  type ModelIdentity,
  POSITIONS,
  parseManifest,
  RESERVED_TENSOR_NAMES,
  type ShardEntry,
  STORE_FORMAT,
  STORE_VERSION,
  type StoreDType,
  type StoreManifest,
  type StoreSite,
  shardFileName,
  TOKEN_IDS,
} from "./manifest.js";

/** What must match for a harvest to append to an existing store. */
export interface StoreIdentity {
  readonly model: ModelIdentity;
  readonly sites: readonly StoreSite[];
  readonly dtype: StoreDType;
  readonly dataset: { readonly [key: string]: JsonValue };
}

/** One shard's rows, in f32 whatever the stored dtype. */
export interface ShardData {
  /** [tokens, d] row-major per site name. */
  readonly acts: ReadonlyMap<string, Float32Array>;
  /** Token id of each row [tokens]. */
  readonly tokenIds: Int32Array;
  /** Position of each row's token in its sequence [tokens]. */
  readonly positions: Int32Array;
  /** Index of the document (in dataset order) each row came from [tokens]. */
  readonly docIds: Int32Array;
}

const LOCK_FILE = ".lock";
const STORE_DTYPE_ON_DISK: Readonly<Record<StoreDType, SafetensorsDType>> = {
  f32: "F32",
  bf16: "BF16",
  f16: "F16",
};

function storeIo(dir: string, what: string, e: unknown): StoreError {
  if (e instanceof StoreError) return e;
  const msg = e instanceof GlassboxError ? e.message : ioMessage(e);
  return new StoreError(`${what}: ${msg}`, dir);
}

function readManifest(dir: string): StoreManifest {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new StoreError(`cannot read the manifest: ${ioMessage(e)}`, dir);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new StoreError(`manifest is not JSON: ${(e as Error).message}`, path);
  }
  return parseManifest(json, path);
}

function manifestText(m: StoreManifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

function withHash(m: Omit<StoreManifest, "content_hash">): StoreManifest {
  return { ...m, content_hash: contentHash(m) };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Lock files this process holds (a second writer in the same process is refused too). */
const heldLocks = new Set<string>();

function takeLock(dir: string): string {
  const path = join(dir, LOCK_FILE);
  if (heldLocks.has(path))
    throw new StoreError("another writer in this process is writing to this store", dir);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: "wx" });
      heldLocks.add(path);
      return path;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw storeIo(dir, "cannot lock the store", e);
    }
    const pid = Number.parseInt(readFileSync(path, "utf8"), 10);
    if (Number.isInteger(pid) && pid !== process.pid && processAlive(pid))
      throw new StoreError(`another process (pid ${pid}) is writing to this store`, dir);
    unlinkSync(path);
  }
  throw new StoreError("cannot lock the store", dir);
}

function describeSites(sites: readonly StoreSite[]): string {
  return sites.map((s) => `${s.name}[${s.d}]`).join(", ");
}

/** Throws a StoreError naming the first thing in which `want` differs from the store. */
export function checkIdentity(dir: string, m: StoreManifest, want: StoreIdentity): void {
  if (m.model.hash !== want.model.hash)
    throw new StoreError(
      `store holds activations of model ${m.model.id} (hash ${m.model.hash.slice(0, 12)}), not of ${want.model.id} (hash ${want.model.hash.slice(0, 12)})`,
      dir,
    );
  if (describeSites(m.sites) !== describeSites(want.sites))
    throw new StoreError(
      `store holds sites ${describeSites(m.sites)}, not ${describeSites(want.sites)}`,
      dir,
    );
  if (m.dtype !== want.dtype)
    throw new StoreError(`store holds ${m.dtype} activations, not ${want.dtype}`, dir);
  const keys = new Set([...Object.keys(m.dataset), ...Object.keys(want.dataset)]);
  for (const k of [...keys].sort()) {
    const a = m.dataset[k];
    const b = want.dataset[k];
    if (a === undefined || b === undefined || canonicalJson(a) !== canonicalJson(b))
      throw new StoreError(
        `store was harvested with dataset ${k} = ${a === undefined ? "(none)" : canonicalJson(a)}, not ${b === undefined ? "(none)" : canonicalJson(b)}`,
        dir,
      );
  }
}

function validateIdentity(dir: string, id: StoreIdentity): void {
  if (id.sites.length === 0) throw new StoreError("no sites to store", dir);
  const seen = new Set<string>();
  for (const s of id.sites) {
    if (RESERVED_TENSOR_NAMES.includes(s.name)) throw new StoreError(`${s.name} cannot name a site`, dir);
    if (seen.has(s.name)) throw new StoreError(`site ${s.name} given twice`, dir);
    if (!Number.isSafeInteger(s.d) || s.d <= 0) throw new StoreError(`site ${s.name} has width ${s.d}`, dir);
    seen.add(s.name);
  }
  if (!/^[0-9a-f]{64}$/.test(id.model.hash))
    throw new StoreError("model hash is not a SHA-256 hex digest", dir);
}

/** f32 values -> bf16 bit patterns, round to nearest even (as `f32ToBf16`, vectorised). */
function toBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) out[i] = ((x >>> 16) | 0x40) & 0xffff;
    else out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

function toF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16(src[i]);
  return out;
}

function encodeActs(dtype: StoreDType, src: Float32Array): ArrayBufferView {
  if (dtype === "f32") return src;
  return dtype === "bf16" ? toBf16(src) : toF16(src);
}

/** Appends shards to a store; one writer per store at a time. */
export class StoreWriter {
  private current: StoreManifest;
  private closed = false;

  private constructor(
    readonly dir: string,
    manifest: StoreManifest,
    private readonly lockPath: string,
  ) {
    this.current = manifest;
  }

  /**
   * Opens `dir` for appending: creates the store if the folder is missing or empty, otherwise
   * checks that it was made by the same model, sites, dtype and dataset (a StoreError if not).
   */
  static open(dir: string, identity: StoreIdentity): StoreWriter {
    dir = resolve(dir);
    validateIdentity(dir, identity);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw storeIo(dir, "cannot create the store folder", e);
    }
    const lock = takeLock(dir);
    try {
      removeTemporaries(dir);
      let manifest: StoreManifest;
      if (existsSync(join(dir, MANIFEST_FILE))) {
        manifest = readManifest(dir);
        checkIdentity(dir, manifest, identity);
      } else {
        const others = readdirSync(dir).filter(
          (f) => f !== LOCK_FILE && !/^shard_\d{5}\.safetensors$/.test(f),
        );
        if (others.length > 0)
          throw new StoreError(
            `folder is not empty and has no ${MANIFEST_FILE} (found ${others.slice(0, 3).join(", ")}); refusing to write into it`,
            dir,
          );
        manifest = withHash({
          format: STORE_FORMAT,
          version: STORE_VERSION,
          model: { id: identity.model.id, hash: identity.model.hash },
          sites: identity.sites.map((s) => ({ name: s.name, d: s.d })),
          dtype: identity.dtype,
          tokens: 0,
          shards: [],
          dataset: identity.dataset,
          cursor: { sequences: 0, skip: 0 },
          complete: false,
        });
        writeFileAtomicSync(join(dir, MANIFEST_FILE), manifestText(manifest));
      }
      return new StoreWriter(dir, manifest, lock);
    } catch (e) {
      releaseLock(lock);
      throw storeIo(dir, "cannot open the store", e);
    }
  }

  get manifest(): StoreManifest {
    return this.current;
  }

  /**
   * Writes one shard and then the manifest listing it with the harvest `cursor` reached. On an
   * error (disk full, ...) the store is left as it was before the call.
   */
  async append(shard: ShardData, cursor: HarvestCursor): Promise<void> {
    if (this.closed) throw new StoreError("writer is closed", this.dir);
    const m = this.current;
    const n = shard.tokenIds.length;
    if (shard.positions.length !== n || shard.docIds.length !== n)
      throw new StoreError("shard token_ids, positions and doc_ids differ in length", this.dir);
    const tensors = new Map<string, TensorToWrite>();
    for (const s of m.sites) {
      const a = shard.acts.get(s.name);
      if (a === undefined) throw new StoreError(`shard has no activations for site ${s.name}`, this.dir);
      if (a.length !== n * s.d)
        throw new StoreError(`site ${s.name}: ${a.length} values, expected ${n} x ${s.d}`, this.dir);
      tensors.set(s.name, {
        dtype: STORE_DTYPE_ON_DISK[m.dtype],
        shape: [n, s.d],
        data: encodeActs(m.dtype, a),
      });
    }
    if (shard.acts.size !== m.sites.length)
      throw new StoreError("shard has activations for unknown sites", this.dir);
    tensors.set(TOKEN_IDS, { dtype: "I32", shape: [n], data: shard.tokenIds });
    tensors.set(POSITIONS, { dtype: "I32", shape: [n], data: shard.positions });
    tensors.set(DOC_IDS, { dtype: "I32", shape: [n], data: shard.docIds });
    const file = shardFileName(m.shards.length);
    const path = join(this.dir, file);
    try {
      await writeSafetensors(path, tensors, { format: STORE_FORMAT, shard: String(m.shards.length) });
    } catch (e) {
      throw storeIo(this.dir, `cannot write ${file}`, e);
    }
    try {
      const bytes = await readFile(path);
      const entry: ShardEntry = {
        file,
        tokens: n,
        bytes: bytes.byteLength,
        sha256: createHash("sha256").update(bytes).digest("hex"),
      };
      const next = withHash({
        ...m,
        tokens: m.tokens + n,
        shards: [...m.shards, entry],
        cursor: { sequences: cursor.sequences, skip: cursor.skip },
      });
      writeFileAtomicSync(join(this.dir, MANIFEST_FILE), manifestText(next));
      this.current = next;
    } catch (e) {
      try {
        unlinkSync(path);
      } catch {}
      throw storeIo(this.dir, `cannot record ${file} in the manifest`, e);
    }
  }

  /** Marks the harvest finished (token target or end of data reached) at `cursor`. */
  finish(cursor: HarvestCursor): void {
    if (this.closed) throw new StoreError("writer is closed", this.dir);
    const next = withHash({ ...this.current, cursor: { ...cursor }, complete: true });
    try {
      writeFileAtomicSync(join(this.dir, MANIFEST_FILE), manifestText(next));
    } catch (e) {
      throw storeIo(this.dir, "cannot update the manifest", e);
    }
    this.current = next;
  }

  /** Releases the lock; the writer cannot be used afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    releaseLock(this.lockPath);
  }
}

function releaseLock(path: string): void {
  heldLocks.delete(path);
  try {
    unlinkSync(path);
  } catch {}
}

/** Removes temporary files a killed writer left behind (their names start with a dot and end in .tmp). */
function removeTemporaries(dir: string): void {
  for (const f of readdirSync(dir)) {
    if (f.startsWith(".") && f.endsWith(".tmp")) unlinkSync(join(dir, f));
  }
}

function widen(raw: Uint16Array, dtype: "bf16" | "f16"): Float32Array {
  const out = new Float32Array(raw.length);
  if (dtype === "bf16") {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < raw.length; i++) bits[i] = raw[i] << 16;
  } else {
    for (let i = 0; i < raw.length; i++) out[i] = f16ToF32(raw[i]);
  }
  return out;
}

/** A store opened for reading. */
export class ActivationStore {
  private constructor(
    readonly dir: string,
    readonly manifest: StoreManifest,
  ) {}

  /** Opens `dir`, validating the manifest and that every listed shard exists with its size. */
  static open(dir: string): ActivationStore {
    dir = resolve(dir);
    if (!existsSync(dir)) throw new StoreError("no such store", dir);
    const m = readManifest(dir);
    for (const s of m.shards) {
      let size: number;
      try {
        size = statSync(join(dir, s.file)).size;
      } catch (e) {
        throw new StoreError(`shard ${s.file} is missing: ${ioMessage(e)}`, dir);
      }
      if (size !== s.bytes)
        throw new StoreError(`shard ${s.file} has ${size} bytes, the manifest says ${s.bytes}`, dir);
    }
    return new ActivationStore(dir, m);
  }

  get sites(): readonly StoreSite[] {
    return this.manifest.sites;
  }

  get tokens(): number {
    return this.manifest.tokens;
  }

  /** Reads shard `index` (activations widened to f32); `sites` limits which sites are read. */
  async readShard(
    index: number,
    sites: readonly string[] = this.manifest.sites.map((s) => s.name),
  ): Promise<ShardData> {
    const entry = this.manifest.shards[index];
    if (entry === undefined)
      throw new StoreError(`no shard ${index} (store has ${this.manifest.shards.length})`, this.dir);
    const path = join(this.dir, entry.file);
    let f: SafetensorsFile;
    try {
      f = SafetensorsFile.open(path);
    } catch (e) {
      throw storeIo(this.dir, `cannot open ${entry.file}`, e);
    }
    try {
      const fail = (msg: string): never => {
        throw new StoreError(`${entry.file}: ${msg}`, this.dir);
      };
      const ints = async (name: string): Promise<Int32Array> => {
        if (!f.has(name)) fail(`no ${name} tensor`);
        const t = await f.readTyped(name);
        if (t.dtype !== "I32" || t.shape.length !== 1 || t.shape[0] !== entry.tokens)
          fail(`${name} is ${t.dtype} ${JSON.stringify(t.shape)}, expected I32 [${entry.tokens}]`);
        return t.data as Int32Array;
      };
      const acts = new Map<string, Float32Array>();
      for (const name of sites) {
        const site = this.manifest.sites.find((s) => s.name === name) ?? fail(`store has no site ${name}`);
        if (!f.has(name)) fail(`no tensor for site ${name}`);
        const t = await f.readTyped(name);
        const want = STORE_DTYPE_ON_DISK[this.manifest.dtype];
        if (t.dtype !== want || t.shape.length !== 2 || t.shape[0] !== entry.tokens || t.shape[1] !== site.d)
          fail(
            `${name} is ${t.dtype} ${JSON.stringify(t.shape)}, expected ${want} [${entry.tokens}, ${site.d}]`,
          );
        acts.set(
          name,
          this.manifest.dtype === "f32"
            ? (t.data as Float32Array)
            : widen(t.data as Uint16Array, this.manifest.dtype),
        );
      }
      return {
        acts,
        tokenIds: await ints(TOKEN_IDS),
        positions: await ints(POSITIONS),
        docIds: await ints(DOC_IDS),
      };
    } catch (e) {
      throw storeIo(this.dir, `cannot read ${entry.file}`, e);
    } finally {
      f.close();
    }
  }

  /** Recomputes every shard's SHA-256; throws a StoreError naming the first shard that differs. */
  async verify(): Promise<void> {
    for (const s of this.manifest.shards) {
      const bytes = await readFile(join(this.dir, s.file)).catch((e: unknown) => {
        throw storeIo(this.dir, `cannot read ${s.file}`, e);
      });
      const sha = createHash("sha256").update(bytes).digest("hex");
      if (sha !== s.sha256)
        throw new StoreError(
          `shard ${s.file} is corrupted (SHA-256 ${sha.slice(0, 12)}, manifest ${s.sha256.slice(0, 12)})`,
          this.dir,
        );
    }
  }
}
