/**
 * Atomic file writes: the one way glassbox replaces a file. Data goes to a temporary file in the
 * same directory (so the rename cannot cross file systems), is fsynced, then renamed over the
 * target, and the directory is fsynced so the rename survives a crash. On any failure the
 * temporary file is removed and the old target is untouched.
 */
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** A fresh temporary path beside `path` (hidden, unique per process and call). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
}

/** Makes a rename inside `dir` durable; not every platform can open a directory, so failures are ignored. */
export function fsyncDirSync(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // best effort
  }
}

/**
 * Replaces `path` atomically with what `write` puts into the temporary file it is given (an open
 * file descriptor; see the module header). Errors, from `write` or the file system, are rethrown
 * unchanged after the temporary file is removed.
 */
export function replaceFileSync(path: string, write: (fd: number) => void): void {
  const tmp = tempPathFor(path);
  let fd = -1;
  try {
    fd = openSync(tmp, "wx");
    write(fd);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
  } catch (e) {
    if (fd >= 0) {
      try {
        closeSync(fd);
      } catch {}
    }
    try {
      unlinkSync(tmp);
    } catch {}
    throw e;
  }
  fsyncDirSync(dirname(path));
}

/** Writes `data` to `path` atomically (see the module header). Errors are rethrown unchanged. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  replaceFileSync(path, (fd) => {
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done, done);
  });
}
