import { RobomeshError } from '../../protocol/errors.js';

/** Planning and running one request. */
export type SchedulerErrorCode = 'NOT_PROFILED' | 'NO_SUCH_PLAN' | 'DEADLINE';

export class SchedulerError extends RobomeshError<SchedulerErrorCode> {
  constructor(code: SchedulerErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}
