/**
 * Positioned reads that fill a buffer completely (looping over short reads and the 2 GiB limit of a
 * single `fs.read`), sync and async, turning I/O failures and early end-of-file into
 * SafetensorsError naming the file.
 */

import { read, readSync } from "node:fs";
import { SafetensorsError } from "../core/errors.js";

/** Largest single read request; `fs.read` takes at most 2^31 - 1 bytes per call. */
const READ_CHUNK = 1 << 30;

export function ioMessage(e: unknown): string {
  if (e instanceof Error) {
    const code = "code" in e && typeof e.code === "string" ? e.code : undefined;
    return code === undefined || e.message.startsWith(code) ? e.message : `${code}: ${e.message}`;
  }
  return String(e);
}

export function readFullySync(fd: number, into: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < into.byteLength) {
    const len = Math.min(READ_CHUNK, into.byteLength - done);
    let got: number;
    try {
      got = readSync(fd, into, done, len, position + done);
    } catch (e) {
      throw new SafetensorsError(`read failed at byte ${position + done}: ${ioMessage(e)}`, file);
    }
    if (got === 0) throw truncated(file, position + done);
    done += got;
  }
}

function readOnce(
  fd: number,
  into: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, into, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

export async function readFully(fd: number, into: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const len = Math.min(READ_CHUNK, into.byteLength - done);
    let got: number;
    try {
      got = await readOnce(fd, into, done, len, position + done);
    } catch (e) {
      throw new SafetensorsError(`read failed at byte ${position + done}: ${ioMessage(e)}`, file);
    }
    if (got === 0) throw truncated(file, position + done);
    done += got;
  }
}

function truncated(file: string, at: number): SafetensorsError {
  return new SafetensorsError(
    `unexpected end of file at byte ${at} (was the file truncated after opening?)`,
    file,
  );
}
