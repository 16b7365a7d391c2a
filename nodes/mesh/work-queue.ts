import { RobomeshError } from '../../protocol/errors.js';

/** Work refused or abandoned by a robot's queue. */
export type WorkErrorCode = 'OVERLOADED' | 'DEADLINE' | 'CANCELLED';

export class WorkError extends RobomeshError<WorkErrorCode> {
  constructor(code: WorkErrorCode, message: string) {
    super(code, message);
  }
}

/** Runs jobs with bounded concurrency and a bounded backlog; beyond it, OVERLOADED at once. */
export class WorkQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly concurrency: number,
    private readonly maxBacklog: number,
  ) {}

  /** Jobs accepted and not yet finished. */
  get length(): number {
    return this.running + this.waiting.length;
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.maxBacklog)
        throw new WorkError('OVERLOADED', `backlog of ${this.maxBacklog} full`);
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await job();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
