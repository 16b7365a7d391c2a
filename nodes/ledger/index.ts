export { type AnchorChain, IotaAnchorChain, iotaClientFor } from './anchor-chain.js';
export { type AnchorQueue, type QueuedAnchor, SqliteAnchorQueue } from './anchor-queue.js';
export { AnchorRelay, anchorRelayTopic } from './anchor-relay.js';
export { anchorSettings, anchorSettingsFromEnv } from './anchor-settings.js';
export { Anchorer } from './anchorer.js';
export {
  AuditError,
  type AuditProof,
  type AuditReport,
  buildProof,
  decisionOf,
  taskEvidence,
  verifyProof,
} from './audit.js';
export { EvidenceRecorder } from './evidence.js';
export { GenesisError, readGenesisFile, signGenesis } from './genesis.js';
export { IotaStandIn } from './iota-standin.js';
export { type AdminCall, buildAdminTx, type GasPlan, iotaAddressOf, type IotaDeployment } from './iota-tx.js';
export { type IngestStatus, Ledger, MissingParentsError } from './ledger.js';
export { LogReplicator } from './replication.js';
export { default as SqliteDatabase } from './sqlite.js';
export { SqliteLogStore } from './sqlite-store.js';
export { type LogStore, MemoryLogStore } from './store.js';
export { checkOwnEntries, markOwnEntries } from './written-mark.js';
