import { RobomeshError } from '../../protocol/errors.js';
import type { InferErrorCode } from '../../protocol/infer-messages.js';

/** Logged tasks: refusals an executor answers with (protocol codes), and a requester's failures. */
export type TaskErrorCode =
  | Extract<
      InferErrorCode,
      | 'UNKNOWN_TASK'
      | 'NOT_AUTHORISED'
      | 'NOT_ASSIGNED'
      | 'TASK_MISMATCH'
      | 'INPUT_MISMATCH'
      | 'TASK_DECIDED'
      | 'BAD_FRAME'
    >
  /** This robot runs without a log. */
  | 'NO_LEDGER'
  /** No plan can run the model here or on a peer. */
  | 'NO_EXECUTORS'
  /** Nobody reachable holds the task's input. */
  | 'INPUT_UNAVAILABLE';

export class TaskError extends RobomeshError<TaskErrorCode> {
  constructor(code: TaskErrorCode, message: string) {
    super(code, message);
  }
}
