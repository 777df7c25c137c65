/**
 * Bibles from SWORD zText modules in Debian (`sword-text-web`: World English Bible with
 * Deuterocanon; `sword-text-kjv`: King James Version). One document per chapter, verses joined as
 * prose. The module's `.conf` is checked: only `ModDrv=zText`, `CompressType=ZIP` and
 * `SourceType=OSIS` are read (both modules are so); anything else is reported, not guessed at.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DataError } from "../../core/errors.js";
import { osisChapters } from "../osis.js";
import type { CorpusDocument, CorpusSource, PackageRef } from "../source.js";
import { confValue, parseSwordConf, ZTextTestament } from "../ztext.js";

/** Chapters of every zText module under a SWORD library root (`.../usr/share/sword`). */
export function swordChapters(swordRoot: string, source: string): { osisID: string; text: string }[] {
  const modsDir = join(swordRoot, "mods.d");
  if (!existsSync(modsDir)) throw new DataError(`no mods.d directory in ${swordRoot}`, source);
  const out: { osisID: string; text: string }[] = [];
  const confs = readdirSync(modsDir)
    .filter((f) => f.endsWith(".conf"))
    .sort();
  if (confs.length === 0) throw new DataError(`no module .conf in ${modsDir}`, source);
  for (const f of confs) {
    const conf = parseSwordConf(readFileSync(join(modsDir, f), "utf8"), `${source}:${f}`);
    const check = (key: string, fallback: string, want: string): void => {
      const got = confValue(conf, key, fallback);
      if (got.toLowerCase() !== want.toLowerCase())
        throw new DataError(`${conf.module}: ${key}=${got} is not supported (only ${want})`, source);
    };
    check("ModDrv", "", "zText");
    check("CompressType", "LZSS", "ZIP");
    check("SourceType", "Plaintext", "OSIS");
    check("Encoding", "Latin-1", "UTF-8");
    const dataDir = join(swordRoot, confValue(conf, "DataPath", ""));
    for (const testament of ["ot", "nt"]) {
      const base = join(dataDir, testament);
      if (!existsSync(`${base}.bzs`)) continue;
      const t = new ZTextTestament(
        readFileSync(`${base}.bzs`),
        readFileSync(`${base}.bzv`),
        readFileSync(`${base}.bzz`),
        `${source}:${conf.module}/${testament}`,
      );
      out.push(...osisChapters(t.entries()));
    }
  }
  return out;
}

function swordSource(name: string, description: string, pkg: PackageRef): CorpusSource {
  return {
    name,
    description,
    licence: "public domain",
    packages: [pkg],
    async extract([root]) {
      const docs: CorpusDocument[] = swordChapters(join(root!, "usr/share/sword"), name).map((c) => ({
        id: `${name}/${c.osisID}`,
        source: name,
        text: c.text,
      }));
      if (docs.length === 0) throw new DataError("no chapters found in the module", name);
      return docs;
    },
  };
}

export const web = swordSource("web", "World English Bible with Deuterocanon (2020 text, modern English)", {
  registry: "debian",
  name: "sword-text-web",
  version: "426.0-1",
});

export const kjv = swordSource("kjv", "King James Version (1769 text, archaic English)", {
  registry: "debian",
  name: "sword-text-kjv",
  version: "14.3-1",
});
