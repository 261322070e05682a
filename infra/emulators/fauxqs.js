// Starts fauxqs (the SNS + SQS emulator) on 127.0.0.1 only.
//
//   node fauxqs.js <path to the fauxqs package folder> <port>
//
// fauxqs's CLI and its startFauxqs() both listen on 0.0.0.0 (startFauxqs
// passes host "0.0.0.0" to listen whatever its options say), so this builds
// the same app with the package's exported buildApp and listens on loopback
// itself. The package is ESM-only and is not resolvable from here, so its
// folder is passed explicitly and its entry point read from its
// package.json. fauxqs.go embeds this file and runs it with node -e;
// write it so that it runs as CommonJS and as an ES module alike (no
// require, no import statements, no top-level await).
"use strict";

async function main() {
  const [pkgDir, portArg] = process.argv.slice(process.argv.length - 2);
  const port = Number(portArg);
  if (!pkgDir || !Number.isInteger(port) || port <= 0) {
    throw new Error("usage: fauxqs.js <fauxqs package folder> <port>");
  }
  const fs = await import("node:fs");
  const path = await import("node:path");
  const url = await import("node:url");
  const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8"));
  const exp = pkg.exports && pkg.exports["."];
  const entry = (exp && exp.import && (exp.import.default || exp.import)) || pkg.main;
  const fauxqs = await import(url.pathToFileURL(path.join(pkgDir, entry)).href);
  const app = fauxqs.buildApp({ logger: false });
  await app.listen({ port, host: "127.0.0.1" });
  process.stdout.write(`fauxqs ${pkg.version} listening on 127.0.0.1:${port}\n`);
  const stop = () => app.close().finally(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  process.stderr.write(`fauxqs.js: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
