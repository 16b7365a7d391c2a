import { RobomeshError } from '../../../protocol/errors.js';

/** The local fleet: robots in their own processes that went down, failed or did not answer. */
export type FleetErrorCode = 'ROBOT_DOWN' | 'ROBOT_ERROR' | 'ROBOT_TIMEOUT';

export class FleetError extends RobomeshError<FleetErrorCode> {
  constructor(code: FleetErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}
