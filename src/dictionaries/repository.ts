/**
 * A local copy of a Gemma Scope 2 repository (`google/gemma-scope-2-*`): one folder per site group
 * (`resid_post`, `attn_out`, `mlp_out`, `transcoder`, `*_all`, `clt`, ...) holding one folder per
 * dictionary (`layer_{L}_width_{W}_l0_{small|medium|big}[_affine][_seed_N]`, or
 * `width_{W}_l0_{..}[_affine]` for CLTs). Listing reads each config.json and tensor headers only;
 * sizes come from the tensors, the layer and L0 label from the folder name (the layout's own
 * convention). Folders that fail to parse are reported, not fatal.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../core/backend.js";
import { DictionaryError } from "../core/errors.js";
import type { DictionaryInfo } from "./formats/common.js";
import { inspectGemmaScope2, isGemmaScope2, loadGemmaScope2 } from "./formats/gemma-scope-2.js";
import type { Dictionary } from "./types.js";

export interface RepositoryEntry extends DictionaryInfo {
  /** Path relative to the repository root, e.g. `resid_post/layer_5_width_16k_l0_small`. */
  readonly folder: string;
  /** The top-level folder (site group), e.g. `resid_post`, `transcoder_all`, `clt`. */
  readonly group: string;
  /** The layer from the folder name (`layer_{L}_...`); null for multi-layer dictionaries. */
  readonly layer: number | null;
  /** `small`, `medium` or `big` from the folder name, when present. */
  readonly l0Label: string | null;
  /** The `_seed_N` suffix, when present. */
  readonly seed: number | null;
}

export interface RepositoryProblem {
  readonly folder: string;
  readonly message: string;
}

export interface RepositoryListing {
  readonly root: string;
  /** Sorted by group, then layer, width and folder name. */
  readonly entries: readonly RepositoryEntry[];
  readonly problems: readonly RepositoryProblem[];
}

const FOLDER = /^(?:layer_(0|[1-9][0-9]*)_)?width_([0-9]+[km]?)_l0_([a-z]+)(_affine)?(?:_seed_([0-9]+))?$/;

function isDir(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory();
}

/** Lists the dictionaries of a Gemma Scope 2 repository copy at `root`. */
export function listRepository(root: string): RepositoryListing {
  if (!isDir(root)) throw new DictionaryError("not a folder", root);
  const entries: RepositoryEntry[] = [];
  const problems: RepositoryProblem[] = [];
  for (const group of readdirSync(root).sort()) {
    const gdir = join(root, group);
    if (group.startsWith(".") || !isDir(gdir)) continue;
    for (const name of readdirSync(gdir).sort()) {
      const dir = join(gdir, name);
      const folder = `${group}/${name}`;
      if (name.startsWith(".") || !isDir(dir)) continue;
      if (!isGemmaScope2(dir)) {
        problems.push({
          folder,
          message: "not a Gemma Scope 2 dictionary folder (no config.json with parameters)",
        });
        continue;
      }
      const m = FOLDER.exec(name);
      try {
        const info = inspectGemmaScope2(dir);
        entries.push({
          ...info,
          folder,
          group,
          layer: m?.[1] === undefined ? null : Number(m[1]),
          l0Label: m?.[3] ?? null,
          seed: m?.[5] === undefined ? null : Number(m[5]),
        });
      } catch (e) {
        if (!(e instanceof DictionaryError)) throw e;
        problems.push({ folder, message: e.message });
      }
    }
  }
  entries.sort(
    (a, b) =>
      a.group.localeCompare(b.group) ||
      (a.layer ?? -1) - (b.layer ?? -1) ||
      a.width - b.width ||
      a.folder.localeCompare(b.folder),
  );
  return { root, entries, problems };
}

/** Loads one listed entry (a CLT's layers are read on first use). */
export function loadRepositoryEntry(entry: RepositoryEntry, backend: Backend): Dictionary {
  return loadGemmaScope2(entry.path, backend);
}
