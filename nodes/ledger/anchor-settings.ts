import { RobomeshError } from '../../protocol/errors.js';
import { type AnchorChain, IotaAnchorChain, iotaClientFor } from './anchor-chain.js';
import type { IotaDeployment } from './iota-tx.js';

/** IOTA settings that cannot work together. */
export class AnchorConfigError extends RobomeshError<'BAD_CONFIG'> {
  constructor(message: string) {
    super('BAD_CONFIG', message);
  }
}

export interface AnchorSettings {
  rpcUrl?: string;
  packageId?: string;
  registryId?: string;
  registryVersion?: number;
}

const OBJECT_ID = /^0x[0-9a-fA-F]{1,64}$/;

/**
 * Anchoring is on when the deployment is known (package and registry ids from `iota client
 * publish`); it submits when an RPC URL is known too, else anchors queue and relay. Undefined:
 * anchoring off. Half-filled settings are an error naming what is missing.
 */
export function anchorSettings(s: AnchorSettings): { deployment: IotaDeployment; chain?: AnchorChain } | undefined {
  if (!s.packageId && !s.registryId) {
    if (s.rpcUrl)
      throw new AnchorConfigError(
        'an IOTA RPC URL is set but not the robot_ledger package id and registry ' +
          'id (iota.package_id, iota.registry_id; IOTA_PACKAGE_ID, IOTA_REGISTRY_ID)',
      );
    return undefined;
  }
  if (!s.packageId || !OBJECT_ID.test(s.packageId))
    throw new AnchorConfigError(`iota.package_id: ${JSON.stringify(s.packageId)} is not an object id (0x…)`);
  if (!s.registryId || !OBJECT_ID.test(s.registryId))
    throw new AnchorConfigError(`iota.registry_id: ${JSON.stringify(s.registryId)} is not an object id (0x…)`);
  if (!Number.isSafeInteger(s.registryVersion) || s.registryVersion! < 1)
    throw new AnchorConfigError(
      "iota.registry_version: the Registry's initial shared version (a positive integer) is required",
    );
  const deployment = { packageId: s.packageId, registryId: s.registryId, registryVersion: s.registryVersion! };
  return { deployment, chain: s.rpcUrl ? new IotaAnchorChain(iotaClientFor(s.rpcUrl)) : undefined };
}

export const anchorSettingsFromEnv = (env: NodeJS.ProcessEnv = process.env): ReturnType<typeof anchorSettings> =>
  anchorSettings({
    rpcUrl: env.IOTA_RPC_URL || undefined,
    packageId: env.IOTA_PACKAGE_ID || undefined,
    registryId: env.IOTA_REGISTRY_ID || undefined,
    registryVersion: env.IOTA_REGISTRY_VERSION ? Number(env.IOTA_REGISTRY_VERSION) : undefined,
  });
