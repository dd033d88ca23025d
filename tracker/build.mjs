// Builds app/static/race.js (everything) and app/static/race.core.js (the core alone) from src/race.js.
// Reproducible: esbuild is pinned in package-lock.json; run `npm ci && npm run build` here.
// `node build.mjs --out DIR` writes the two files into DIR instead (the test that checks the build).
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const at = process.argv.indexOf("--out");
const out = at > 0 ? process.argv[at + 1] : join(here, "..", "app", "static");
const { version } = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));

for (const [file, full] of [["race.js", true], ["race.core.js", false]]) {
  await build({
    entryPoints: [join(here, "src", "race.js")],
    outfile: join(out, file),
    bundle: false,
    minify: true,
    format: "iife",
    target: "es2017",
    charset: "utf8",
    legalComments: "none",
    banner: { js: `/*! race.js ${version}${full ? "" : " core"} */` },
    define: { FULL: String(full), VERSION: JSON.stringify(version) },
    logLevel: "warning",
  });
}
