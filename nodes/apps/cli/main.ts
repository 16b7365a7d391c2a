#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { RobomeshError } from '../../../protocol/errors.js';
import {
  DEFAULT_STORE,
  auditExportCommand,
  auditResultCommand,
  auditTasksCommand,
  auditVerifyCommand,
} from './audit.js';
import { demoCommand } from './demo.js';
import { exitsDeclareCommand, exitsFitCommand, exitsLinesCommand } from './exits.js';
import { chainBuildCommand } from './chain.js';
import { chainRunCommand } from './chain-run.js';
import { fleetCommand, parsePlacement } from './fleet.js';
import {
  iotaAddressCommand,
  iotaBalanceCommand,
  iotaRegisterCommand,
  iotaRevokeCommand,
  iotaStatusCommand,
} from './iota.js';
import { admitCommand, genesisCommand, keygenCommand, revokeCommand } from './membership.js';
import { meshDemoCommand } from './mesh-demo.js';
import { UsageError, parseGranularity, parseInputShape, parsePositiveInt, parsePrecision } from './options.js';
import { profileCommand } from './profile.js';
import { sliceCommand } from './slice.js';

const program = new Command('robomesh')
  .description('Split neural-network inference across a fleet of robots')
  // Errors are reported below, one line each, exit 2, like every other error of the command.
  .exitOverride()
  .configureOutput({ outputError: () => undefined });

const shapeOption = [
  '--input-shape <name=DxDx...>',
  'input shape for symbolic dims (repeatable)',
  parseInputShape,
] as const;

program
  .command('slice')
  .description('list the cuts of an ONNX model, or write the head and tail of one cut')
  .argument('<model>', 'ONNX file, or builtin:ocr-det | builtin:ocr-cls | builtin:cnn')
  .option('--list', 'list candidate cuts')
  .option('--json', 'with --list: print JSON')
  .option('--cut <id>', 'the cut to write (an id from --list)')
  .option('--precision <p>', 'boundary precision: fp32, fp16 or int8', parsePrecision, 'fp32')
  .option('--granularity <g>', 'int8 scales per tensor or per channel', parseGranularity, 'channel')
  .option('--out <dir>', 'with --cut: where to write head.onnx, tail.onnx, cut.json')
  .option(...shapeOption)
  .action(sliceCommand);

const chain = program
  .command('chain')
  .description('chains: a model cut into stages that different robots hold and serve');
chain
  .command('run')
  .description('try a chain here: one robot per stage on loopback, a stream of frames through them')
  .argument('<dir>', 'a folder written by `robomesh chain build` (chain.json and the stage files)')
  .option('--fps <n>', 'frames per second offered', parsePositiveInt, 5)
  .option('--seconds <n>', 'how long to stream', parsePositiveInt, 10)
  .action(chainRunCommand);
chain
  .command('build')
  .description('write the stage files and chain.json of a model cut into N stages')
  .argument('<model>', 'ONNX file, or builtin:ocr-det | builtin:ocr-cls | builtin:cnn')
  .option('--stages <n>', 'how many stages (at least 2)', parsePositiveInt, 3)
  .option('--precision <p>', 'boundary precision between stages: fp32, fp16 or int8', parsePrecision, 'fp32')
  .option('--cuts <ids>', 'the cuts to use, comma-separated (default: chosen to balance the stages)')
  .option('--mbps <rate>', 'link rate, Mbit/s: boundaries are weighed as pipeline stages too', parseFloat)
  .option('--replicas <list>', 'robots that will share each stage, e.g. 1,2,1 (a shared stage may be heavier)')
  .option('--last-here', 'the requester holds the last stage: the model outputs do not cross the link')
  .option('--out <dir>', 'where to write the stages and chain.json', 'chain')
  .option(...shapeOption)
  .action(chainBuildCommand);

program
  .command('profile')
  .description('measure head and tail time of every cut on this machine (stored per model hash)')
  .argument('<model>', 'ONNX file, or builtin:ocr-det | builtin:ocr-cls | builtin:cnn')
  .option('--runs <n>', 'timed runs per part (median reported)', parsePositiveInt, 20)
  .option('--threads <n>', 'ORT intra-op threads (0 = ORT default)', (v) => (v === '0' ? 0 : parsePositiveInt(v)), 1)
  .option('--precision <p>', 'boundary precision: fp32, fp16 or int8', parsePrecision, 'fp32')
  .option('--json', 'print the profile as JSON')
  .option('--force', 'measure again even if a stored profile matches')
  .option('--cache-dir <dir>', 'where profiles are stored (default $ROBOMESH_CACHE or ~/.cache/robomesh/profiles)')
  .option(...shapeOption)
  .action(profileCommand);

const exits = program.command('exits').description('early exits: fit them on calibration images, or make images');
exits
  .command('fit')
  .description('fit an exit at each cut of a classifier by distillation from its own outputs (no labels)')
  .argument('<model>', 'ONNX file, or builtin:ocr-cls')
  .requiredOption('--calib <dir>', 'calibration images (png, jpg, …), e.g. from `robomesh exits lines`')
  .option('--out <dir>', 'where to write exit-<cut>-<hash>.onnx files', 'exits')
  .option('--target <agreement>', 'agreement with the whole model to keep', parseFloat, 0.99)
  .option('--seed <n>', 'seed of the fit/threshold/test split', parsePositiveInt, 1)
  .option('--cut <id...>', 'only these cuts')
  .option(...shapeOption)
  .action(exitsFitCommand);
exits
  .command('declare')
  .description('make an output the model computes at an earlier depth an exit (writes the model without it)')
  .argument('<model>', 'ONNX file with the early output beside the final one')
  .requiredOption('--output <name>', 'the early output')
  .requiredOption('--calib <dir>', 'calibration images, to choose the threshold')
  .option('--out <dir>', 'where to write model.onnx and the exit', 'exits')
  .option('--target <agreement>', 'agreement with the whole model to keep', parseFloat, 0.99)
  .option('--seed <n>', 'seed of the threshold/test split', parsePositiveInt, 1)
  .option(...shapeOption)
  .action(exitsDeclareCommand);
exits
  .command('lines')
  .description('render text lines in the installed fonts, half upside down (calibration for builtin:ocr-cls)')
  .argument('<dir>', 'where to write the PNG files')
  .option('--count <n>', 'how many lines', parsePositiveInt, 400)
  .option('--seed <n>', 'seed of words, sizes and colours', parsePositiveInt, 1)
  .action(exitsLinesCommand);

program
  .command('fleet')
  .description(
    'run a local fleet: robots mapping a simulated world, splitting ' +
      'inference, a partition and a liar; dashboard and report',
  )
  .option('--scenario <file>', 'scenario YAML (default: 4 robots, a partition and heal, a robot drawing fake walls)')
  .option('--robots <n>', 'robots to start (overrides the scenario)', parsePositiveInt)
  .option('--duration <s>', 'seconds to run (overrides the scenario)', parsePositiveInt)
  .option(
    '--processes <K|separate|in-process>',
    'where robots run: K = spread round-robin over K shared processes; separate = one process per robot; ' +
      'in-process = all in this one (default: separate up to 12 robots, above that one process per CPU core)',
    parsePlacement,
  )
  .option('--in-process', 'the same as --processes in-process')
  .option('--no-dashboard', 'do not serve the dashboard')
  .option('--port <n>', 'dashboard port on 127.0.0.1', parsePositiveInt, 8080)
  .option('--data-dir <dir>', 'keys, logs, profiles and the report (default: a temporary folder)')
  .action(fleetCommand);

program
  .command('mesh-demo')
  .description(
    'split inference between 3 in-process robots, printing every ' +
      'scheduling decision, with a partition and a garbage-answering robot',
  )
  .option('--robots <n>', 'robots to start (in this process)', parsePositiveInt, 3)
  .option('--requests <n>', 'inference requests across the run', parsePositiveInt, 12)
  .option('--data-dir <dir>', 'keep keys and profiles here (default: a temporary folder)')
  .action(meshDemoCommand);

program
  .command('demo')
  .description('split every built-in model on this machine and compare with whole-model runs')
  .action(demoCommand);

const audit = program
  .command('audit')
  .description('check the chain of evidence for a result: entries, signatures, quorum, Merkle proof, IOTA anchor');
const rpcOption = ['--rpc <url>', 'IOTA JSON-RPC endpoint to check the anchor live (default $IOTA_RPC_URL)'] as const;
audit
  .command('tasks')
  .description("list the tasks in a robot's log store with their state")
  .option('--store <path>', "the robot's log store (SQLite)", DEFAULT_STORE)
  .option('--state <s>', 'only tasks in this state: open, assigned, provisional, final, overturned')
  .option('--robot <key>', 'only tasks this robot posted or executes (a prefix of its key)')
  .option('--model <hash>', 'only tasks of this model (a prefix of its hash)')
  .option('--json', 'print JSON')
  .action(auditTasksCommand);
audit
  .command('result')
  .description('print every assignment and result of one task, its decision and why, and check its anchor')
  .argument('<task>', 'task id (robomesh audit tasks lists them)')
  .option('--store <path>', "the robot's log store (SQLite)", DEFAULT_STORE)
  .option('--json', 'print the report as JSON')
  .option(...rpcOption)
  .action(auditResultCommand);
audit
  .command('export')
  .description('write a self-contained proof file for one task')
  .argument('<task>', 'task id')
  .option('--store <path>', "the robot's log store (SQLite)", DEFAULT_STORE)
  .requiredOption('--out <file>', 'where to write the proof (JSON)')
  .action(auditExportCommand);
audit
  .command('verify')
  .description('verify a proof file with nothing else (and an IOTA endpoint if given)')
  .argument('<proof>', 'proof.json from `robomesh audit export`')
  .option('--json', 'print the report as JSON')
  .option(...rpcOption)
  .action(auditVerifyCommand);

const iota = program.command('iota').description("a robot's IOTA side: its address, gas and anchoring status");
const dataDirOption = ['--data-dir <dir>', "the robot's data folder", 'robomesh-data'] as const;
iota
  .command('address')
  .description("the robot's IOTA address, from its key (offline)")
  .option(...dataDirOption)
  .option('--json', 'print JSON')
  .action(iotaAddressCommand);
iota
  .command('balance')
  .description("the address's gas balance (live: --rpc or $IOTA_RPC_URL)")
  .option(...dataDirOption)
  .option('--rpc <url>', 'IOTA JSON-RPC endpoint (default $IOTA_RPC_URL)')
  .option('--json', 'print JSON')
  .action(iotaBalanceCommand);
iota
  .command('status')
  .description('the last anchors in the log and the anchors queued, with why they wait or failed (offline)')
  .option(...dataDirOption)
  .option('--last <n>', 'anchors to show', parsePositiveInt, 5)
  .option('--json', 'print JSON')
  .action(iotaStatusCommand);
for (const [name, action, what] of [
  ['register', iotaRegisterCommand, 'allow ROBOT (a data folder or its 64-hex key) to anchor'],
  ['revoke', iotaRevokeCommand, 'stop ROBOT (a data folder, key or 0x address) from anchoring'],
] as const)
  iota
    .command(name)
    .description(
      `admin: ${what}. Live with --rpc or $IOTA_RPC_URL (signed with --data-dir's key, which must own the ` +
        'AdminCap); offline, prints the iota client ptb command. ' +
        'Needs IOTA_PACKAGE_ID, IOTA_REGISTRY_ID, IOTA_REGISTRY_VERSION',
    )
    .argument(
      '<robot>',
      'the robot: its data folder, its key (64 hex digits)' + (name === 'revoke' ? ' or its 0x address' : ''),
    )
    .option(...dataDirOption)
    .option('--cap <id>', 'the AdminCap object id (default $IOTA_ADMIN_CAP)')
    .option('--rpc <url>', 'IOTA JSON-RPC endpoint (default $IOTA_RPC_URL)')
    .option('--json', 'print JSON')
    .action(action);

program
  .command('keygen')
  .description("create a robot's identity (its data folder's key) before its first start; prints its PeerId")
  .option(...dataDirOption)
  .option('--json', 'print JSON')
  .action(keygenCommand);
program
  .command('genesis')
  .description(
    "write a fleet's genesis: its name and members, signed by an admin key (created in --admin-dir if absent). " +
      'Robots load it as fleet.genesis_file',
  )
  .requiredOption('--fleet <name>', 'the fleet name (gossip topics are per fleet)')
  .option(
    '--member <robot>',
    'a member: its data folder, PeerId or 64-hex key (repeatable)',
    (v: string, prev: string[] = []) => [...prev, v],
  )
  .option('--admin-dir <dir>', "the admin's folder: its key, and its copy of the log", 'robomesh-admin')
  .requiredOption('--out <file>', 'where to write the genesis (binary; never overwritten)')
  .option('--json', 'print JSON')
  .action(genesisCommand);
for (const [name, action, what] of [
  ['admit', admitCommand, 'admit ROBOT to the fleet: it may connect once a robot has the entry'],
  ['revoke', revokeCommand, 'revoke ROBOT: every robot holding the entry cuts it off'],
] as const)
  program
    .command(name)
    .description(
      `admin: ${what}. Joins the fleet for a moment with the admin key (found by mDNS or --bootstrap), ` +
        'writes the entry to the log and waits until a robot holds it',
    )
    .argument('<robot>', 'the robot: its data folder, PeerId or 64-hex key')
    .requiredOption('--genesis <file>', "the fleet's genesis (from robomesh genesis)")
    .option('--admin-dir <dir>', "the admin's folder: its key, and its copy of the log", 'robomesh-admin')
    .option('--bootstrap <multiaddr>', 'a robot to dial (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option(
      '--listen <multiaddr>',
      'where to listen (repeatable; default /ip4/0.0.0.0/tcp/0)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--no-mdns', 'do not look for robots by mDNS')
    .option('--timeout <s>', 'seconds to find a robot and have it hold the entry', parsePositiveInt, 30)
    .option('--json', 'print JSON')
    .action(action);

// Every subcommand reports its own option errors the same way.
for (const command of [program, ...program.commands, ...program.commands.flatMap((c) => c.commands)])
  command.exitOverride().configureOutput({ outputError: () => undefined });

try {
  await program.parseAsync();
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here too, with their own exit code (0).
    if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.help') {
      process.exitCode = err.exitCode;
    } else {
      process.stderr.write(`robomesh: ${err.message.replace(/^error: /, '')} (see robomesh --help)\n`);
      process.exitCode = 2;
    }
  } else if (err instanceof RobomeshError || err instanceof UsageError) {
    process.stderr.write(`robomesh: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    throw err;
  }
}
