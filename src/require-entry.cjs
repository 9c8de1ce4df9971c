// What require('rwkv-ts') (or a subpath) loads on a Node that cannot require() an ES module: before 20.19
// and 22.12. package.json's "exports" lists "module-sync" first, a condition only those newer versions
// know (they require() the ES module through it); older ones skip it and reach "require", this file, so the
// failure says what to do instead of Node's ERR_REQUIRE_ESM. Bundlers match "module" before it. Plain
// CommonJS, not compiled: tsconfig.json builds only .ts files.
'use strict';
const error = new Error(
  `rwkv-ts is an ES module: use import(), or Node ≥ 20.19 (or ≥ 22.12) which can require() it; this is Node ${process.version}`,
);
error.code = 'ERR_REQUIRE_ESM';
throw error;
