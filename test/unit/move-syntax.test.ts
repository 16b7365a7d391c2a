import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type TreeSitter from 'web-tree-sitter';
import { iotaAddressOf } from '../../nodes/ledger/iota-tx.js';

// Nothing on the development machine compiles Move. This is a syntax-only check with the
// tree-sitter grammar shipped in @mysten/prettier-plugin-move: it catches parse errors,
// not type or borrow errors.

const require = createRequire(import.meta.url);
const Parser = require('web-tree-sitter') as typeof TreeSitter;
type SyntaxNode = TreeSitter.SyntaxNode;

// The compiled test lives in dist/test/, the sources in <root>/contracts/move.
const MOVE_ROOT = fileURLToPath(new URL('../../../contracts/move', import.meta.url));

const moveFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'build' ? [] : moveFiles(p);
    return e.name.endsWith('.move') ? [p] : [];
  });

const walk = (node: SyntaxNode, visit: (n: SyntaxNode) => void): void => {
  visit(node);
  for (const child of node.children) walk(child, visit);
};

/** Every ERROR or MISSING node, as `file:line:col type "snippet"`. */
const syntaxErrors = (parser: TreeSitter, file: string, source: string): string[] => {
  const problems: string[] = [];
  walk(parser.parse(source).rootNode, (n) => {
    if (n.type !== 'ERROR' && !n.isMissing()) return;
    const { row, column } = n.startPosition;
    const what = n.isMissing() ? `MISSING ${n.type}` : 'ERROR';
    const snippet = source.split('\n')[row].trim().slice(0, 80);
    problems.push(`${file}:${row + 1}:${column + 1} ${what} near ${JSON.stringify(snippet)}`);
  });
  return problems;
};

/** Parameter types of each function in `source`, keyed by function name. */
const functionSignatures = (
  parser: TreeSitter,
  source: string,
): Map<string, { isPublic: boolean; params: string[] }> => {
  const out = new Map<string, { isPublic: boolean; params: string[] }>();
  walk(parser.parse(source).rootNode, (n) => {
    if (n.type !== 'function_definition') return;
    const name = n.childForFieldName('name')?.text;
    const params = n.childForFieldName('parameters');
    assert.ok(name && params, `function definition without name or parameters: ${n.text.slice(0, 60)}`);
    const isPublic = n.children.some((c) => c.type === 'modifier' && c.text === 'public');
    const types = params.namedChildren
      .filter((p) => p.type === 'function_parameter' || p.type === 'mut_function_parameter')
      .map((p) => (p.childForFieldName('type')?.text ?? '?').replace(/\s+/g, ' '));
    out.set(name, { isPublic, params: types });
  });
  return out;
};

describe('IOTA Move package (tree-sitter syntax check)', () => {
  let parser: TreeSitter;

  before(async () => {
    await Parser.init();
    const Move = await Parser.Language.load(require.resolve('@mysten/prettier-plugin-move/tree-sitter-move.wasm'));
    parser = new Parser();
    parser.setLanguage(Move);
  });

  it('parses every .move file under contracts/move without ERROR or MISSING nodes', () => {
    const files = moveFiles(MOVE_ROOT)
      .map((f) => relative(MOVE_ROOT, f))
      .sort();
    assert.ok(files.includes(join('sources', 'ledger.move')), `sources/ledger.move not found in ${MOVE_ROOT}`);
    assert.ok(files.includes(join('tests', 'ledger_tests.move')), `tests/ledger_tests.move not found in ${MOVE_ROOT}`);
    const problems = files.flatMap((f) =>
      syntaxErrors(parser, `contracts/move/${f}`, readFileSync(join(MOVE_ROOT, f), 'utf8')),
    );
    assert.deepEqual(problems, [], `Move syntax errors:\n${problems.join('\n')}`);
  });

  it('flags a broken snippet, so the check itself works', () => {
    const broken = 'module a::m {\n    fun f(): u64 {\n        let x = ;\n        x\n    }\n}\n';
    const problems = syntaxErrors(parser, 'broken.move', broken);
    assert.ok(problems.length > 0, 'a missing expression was not reported');
    assert.match(problems[0], /^broken\.move:3:\d+ /);
    assert.deepEqual(syntaxErrors(parser, 'fixed.move', broken.replace('let x = ;', 'let x = 1;')), []);
  });

  it('declares the public functions the TypeScript adapter calls, with their exact parameters', () => {
    const fns = functionSignatures(parser, readFileSync(join(MOVE_ROOT, 'sources', 'ledger.move'), 'utf8'));
    const expected: Record<string, string[]> = {
      register_robot: ['&AdminCap', '&mut Registry', 'vector<u8>'],
      revoke_robot: ['&AdminCap', '&mut Registry', 'address'],
      anchor: ['&mut Registry', 'vector<u8>', 'u64', 'u64', 'u64', '&Clock', '&mut TxContext'],
      commit_result: ['&Registry', 'vector<u8>', 'vector<u8>', 'vector<u8>', '&mut TxContext'],
      address_of_key: ['&vector<u8>'],
      is_registered: ['&Registry', 'address'],
      anchor_count: ['&Registry'],
      latest_root: ['&Registry'],
    };
    for (const [name, params] of Object.entries(expected)) {
      const fn = fns.get(name);
      assert.ok(fn, `ledger.move does not define ${name}`);
      assert.ok(fn.isPublic, `${name} must be public`);
      assert.deepEqual(fn.params, params, `${name} parameters`);
    }
    assert.deepEqual(fns.get('init'), { isPublic: false, params: ['&mut TxContext'] });
  });

  it('the address the Move tests expect for their robot key is the one the IOTA SDK derives', () => {
    const tests = readFileSync(join(MOVE_ROOT, 'tests', 'ledger_tests.move'), 'utf8');
    const key = /fun robot_key\(\): vector<u8> \{ bytes\(32, (\d+)\) \}/.exec(tests);
    const expected = /assert!\(robot\(\) == @(0x[0-9a-f]{64}), 0\)/.exec(tests);
    assert.ok(key && expected, 'ledger_tests.move names its robot key and the address it expects');
    assert.equal(iotaAddressOf(new Uint8Array(32).fill(Number(key[1]))), expected[1]);
  });
});
