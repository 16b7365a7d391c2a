/** Base of every error robomesh raises on purpose: callers switch on `code`, never on message text. */
export class RobomeshError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export type FrameErrorCode =
  | 'TRUNCATED'
  | 'BAD_MAGIC'
  | 'UNSUPPORTED_VERSION'
  | 'RESERVED_FLAGS'
  | 'UNKNOWN_DTYPE'
  | 'BAD_DIMS'
  | 'SIZE_MISMATCH'
  | 'TOO_LARGE'
  | 'BAD_QUANT'
  | 'BAD_NAME'
  | 'TRAILING_BYTES';

/** A tensor frame that cannot be encoded or decoded. */
export class FrameError extends RobomeshError {
  constructor(
    override readonly code: FrameErrorCode,
    message: string,
  ) {
    super(code, message);
  }
}
