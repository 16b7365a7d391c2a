import { RobomeshError } from '../../../protocol/errors.js';

/** The live dashboards. */
export type DashboardErrorCode = 'BAD_MAP_VIEW' | 'DASHBOARD_LISTEN';

export class DashboardError extends RobomeshError<DashboardErrorCode> {
  constructor(code: DashboardErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}
