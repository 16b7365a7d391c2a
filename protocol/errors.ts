/**
 * Base of every error robomesh raises on purpose: callers switch on `code`, never on message text.
 * Abstract, so each subsystem throws its own class with its own closed list of codes (the compiler
 * refuses a `new RobomeshError(...)` with an ad-hoc code).
 */
export abstract class RobomeshError<C extends string = string> extends Error {
  protected constructor(
    readonly code: C,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
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
export class FrameError extends RobomeshError<FrameErrorCode> {
  constructor(code: FrameErrorCode, message: string) {
    super(code, message);
  }
}

export type EntryErrorCode =
  | 'MALFORMED'
  | 'OVERSIZE'
  | 'BAD_SIGNATURE'
  | 'UNKNOWN_AUTHOR'
  | 'WRONG_SEQUENCE'
  | 'WRONG_CLOCK'
  /** Its parents are not held yet: fetch them (sync) and offer the entry again. */
  | 'MISSING_PARENTS'
  /** A signing operation without a key, or a store that is not this identity's. */
  | 'NO_SIGNER';

/** A log entry that is malformed, forged or out of place. */
export class EntryError extends RobomeshError<EntryErrorCode> {
  constructor(code: EntryErrorCode, message: string) {
    super(code, message);
  }
}

export type WireErrorCode = 'MALFORMED' | 'TOO_LARGE';

/** A message of a mesh protocol that does not decode within its limits (protocol/limits.ts). */
export class WireError extends RobomeshError<WireErrorCode> {
  constructor(
    readonly protocol: string,
    code: WireErrorCode,
    message: string,
  ) {
    super(code, message);
  }
}
