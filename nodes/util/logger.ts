import { type Logger, logger } from '@libp2p/logger';

export type { Logger };

/**
 * A component's logger, silent unless switched on: DEBUG=robomesh:tasks,robomesh:log (or
 * robomesh:* for all; libp2p's own with libp2p:*, the convention js-libp2p users know).
 * `log.error` lines are enabled with the component.
 */
export function componentLogger(component: string): Logger {
  return logger(`robomesh:${component}`);
}
