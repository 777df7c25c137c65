// Builds the optional native addon (native/, binding.gyp) with node-gyp at install time.
// Never fails the install: without a compiler or OpenBLAS, glassbox runs on the reference backend.
import { existsSync } from "node:fs";

if (!existsSync(new URL("../binding.gyp", import.meta.url))) process.exit(0);
