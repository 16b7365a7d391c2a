import { RobomeshError } from '../../../protocol/errors.js';

/** A simulated world, map file or simulator setting that cannot be used. */
export type SimErrorCode =
  | 'BAD_SIM_CONFIG'
  | 'BAD_WORLD'
  | 'BAD_MAP_YAML'
  | 'BAD_MAP_IMAGE'
  | 'MAP_NOT_FOUND'
  | 'MAP_IMAGE_MISSING'
  | 'MAP_TRUNCATED'
  | 'UNKNOWN_FLOOR_PLAN';

export class SimError extends RobomeshError<SimErrorCode> {
  constructor(code: SimErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}
