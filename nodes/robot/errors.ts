import { RobomeshError } from '../../protocol/errors.js';

/** A robot asked for something its configuration does not give it. */
export type RobotErrorCode = 'NO_LEDGER' | 'NO_EXECUTORS' | 'BAD_GENESIS' | 'BAD_CONFIG';

export class RobotError extends RobomeshError<RobotErrorCode> {
  constructor(code: RobotErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}
