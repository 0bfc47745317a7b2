// Bundles the gadget into dist/: gadget.js and gadget.css (minified, byte-identical across runs), and
// dist/inputs.sha256, the hash of every file the bundle is built from, which a Rust test recomputes to tell that
// the committed bundle is current.
//
// The hash: for each input file in sorted order of its path relative to the repository root, a line
// "<sha256 hex of the file>  <path>\n" (the output of `sha256sum`); the SHA-256 of all lines together.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const web = dirname(fileURLToPath(import.meta.url));
const root = dirname(web);
const dist = join(web, "dist");

/** Files under `dir` (recursively) whose names end with `suffix`, skipping the folders named in `skip`. */
function filesUnder(dir, suffix, skip = []) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!skip.includes(path)) found.push(...filesUnder(path, suffix, skip));
    } else if (entry.isFile() && entry.name.endsWith(suffix)) {
      found.push(path);
    }
  }
  return found;
}

/** Every file the bundle is built from, as paths relative to the repository root with `/` separators. */
function inputs() {
  const files = [
    join(web, "build.mjs"),
    join(web, "buf.gen.yaml"),
    join(web, "index.html"),
    join(web, "style.css"),
    join(web, "package.json"),
    join(web, "package-lock.json"),
    ...filesUnder(join(web, "src"), ".ts", [join(web, "src", "gen")]),
    ...filesUnder(join(web, "third_party"), ".proto"),
    ...filesUnder(join(root, "proto", "customer_context", "v1"), ".proto"),
  ];
  return files
    .map((file) => ({ file, path: relative(root, file).split(sep).join("/") }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function inputsHash() {
  const all = createHash("sha256");
  for (const { file, path } of inputs()) {
    const one = createHash("sha256").update(readFileSync(file)).digest("hex");
    all.update(`${one}  ${path}\n`);
  }
  return all.digest("hex");
}

const hash = inputsHash();
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

await esbuild.build({
  // main.ts imports style.css: esbuild writes it beside the script as gadget.css.
  entryPoints: { gadget: join(web, "src", "main.ts") },
  outdir: dist,
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2022"],
  platform: "browser",
  legalComments: "none",
  charset: "utf8",
  sourcemap: false,
  banner: { js: `/* customer-context gadget; inputs sha256 ${hash} */`, css: `/* inputs sha256 ${hash} */` },
  logLevel: "warning",
});
writeFileSync(join(dist, "inputs.sha256"), `${hash}\n`);
console.log(`web/dist built; inputs sha256 ${hash}`);
