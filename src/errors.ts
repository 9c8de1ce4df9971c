// Typed errors. Every error a user can cause (a bad file, a bad option) is one of these, and its message
// names the file, tensor or field at fault so that the CLI can print it as one line.

/** What went wrong, for programs that want to branch on it. */
export type RwkvErrorCode =
  | 'FILE_NOT_FOUND'
  | 'NOT_A_FILE'
  | 'TRUNCATED'
  | 'BAD_MAGIC'
  | 'UNSUPPORTED_VERSION'
  | 'UNSUPPORTED_DTYPE'
  | 'BAD_HEADER'
  | 'MISSING_TENSOR'
  | 'BAD_SHAPE'
  | 'UNKNOWN_MODEL'
  | 'BAD_STATE'
  | 'BAD_ARGUMENT'
  | 'BAD_DATA'
  | 'NON_FINITE'
  | 'ABORTED'
  | 'NO_DEVICE';

export class RwkvError extends Error {
  readonly code: RwkvErrorCode;
  /** The file at fault, when there is one. */
  readonly file: string | undefined;
  /** The tensor at fault, when there is one. */
  readonly tensor: string | undefined;

  constructor(code: RwkvErrorCode, message: string, where: { file?: string; tensor?: string } = {}) {
    const parts: string[] = [];
    if (where.file !== undefined) parts.push(where.file);
    if (where.tensor !== undefined) parts.push(`tensor '${where.tensor}'`);
    super(parts.length > 0 ? `${parts.join(': ')}: ${message}` : message);
    this.name = new.target.name;
    this.code = code;
    this.file = where.file;
    this.tensor = where.tensor;
  }
}

/** A checkpoint file that cannot be read: truncated, wrong magic, unknown version or dtype. */
export class FormatError extends RwkvError {}

/** A file that reads fine but is not a model we can run: missing tensors, inconsistent shapes. */
export class ModelError extends RwkvError {}

/**
 * Logits with a NaN or an infinity: corrupt weights or a corrupt state (a sampler would otherwise pick
 * token 0 forever, and a score would be NaN). `position` is the token's index among the sequence's tokens
 * in the call.
 */
export class NonFiniteError extends ModelError {
  readonly position: number;

  constructor(message: string, position: number, where: { file?: string } = {}) {
    super('NON_FINITE', message, where);
    this.position = position;
  }
}

/** A state that does not belong to the model it is used with. */
export class StateError extends RwkvError {}

/** An invalid option or argument from the caller. */
export class ArgumentError extends RwkvError {
  constructor(message: string) {
    super('BAD_ARGUMENT', message);
  }
}

/** An operation stopped by its AbortSignal. */
export class AbortError extends RwkvError {
  constructor(message = 'aborted') {
    super('ABORTED', message);
    this.name = 'AbortError';
  }
}

/** The device a backend needs is not there: no WebGPU adapter, no `webgpu` package on Node, a device lost. */
export class DeviceError extends RwkvError {
  constructor(message: string) {
    super('NO_DEVICE', message);
  }
}
