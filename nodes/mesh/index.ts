export { AdvertBoard, advertTopic, type PeerCapability } from './adverts.js';
export { BlobService, fetchBlob } from './blob-fetch.js';
export { createMeshHost, type MeshHost, type MeshNode } from './host.js';
export {
  identityFromSeed,
  keyOfPeer,
  loadOrCreateIdentity,
  peerOfKey,
  readIdentity,
  type RobotIdentity,
} from './identity.js';
export { InferClient, type RemoteResult } from './infer-client.js';
export { InferService, type InferServiceInit, type TaskGate } from './infer-service.js';
export { type LinkShape, LinkShaper } from './link-shaper.js';
export { BytePacer, RateLimit } from './peer-budget.js';
export { probe, type ProbeTiming, ProbeService } from './probe.js';
export { PeerReputation } from './reputation.js';
export { WorkQueue } from './work-queue.js';
