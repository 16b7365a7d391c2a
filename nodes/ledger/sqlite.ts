import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';

/**
 * better-sqlite3, the build this Node runs. Up to 12.x it is a node::ObjectWrap addon, and on
 * Node ≥ 24.19 a statement finalised by a background garbage collection aborts the process
 * ("Assertion failed: (env) != nullptr", nodejs/node#65446; seen here in the unit tests on Node
 * 24.21). 13.x is Node-API (and ships prebuilt), but needs Node ≥ 22 and segfaults on Node 20.
 * Both are installed (13 under the alias better-sqlite3-napi); Node ≥ 22 loads 13.
 */
const major = Number(process.versions.node.split('.')[0]);
const require = createRequire(import.meta.url);

const Database = require(major >= 22 ? 'better-sqlite3-napi' : 'better-sqlite3') as typeof BetterSqlite3;

// eslint-disable-next-line @typescript-eslint/no-namespace -- the type namespace better-sqlite3 declares
declare namespace Database {
  type Database = BetterSqlite3.Database;
  type Statement = BetterSqlite3.Statement;
}

export default Database;
