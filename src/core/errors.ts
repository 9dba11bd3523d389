/**
 * Typed errors. Every expected failure is an OvmfHookError with a one-line, actionable message
 * and the exit code the CLI / hook should use: 1 = refused by policy or state, 2 = bad input or usage.
 */
export type ExitCode = 1 | 2;

export class OvmfHookError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = 2,
  ) {
    super(message.replace(/\s*\n\s*/g, ' '));
    this.name = new.target.name;
  }
}

/** The input is not XML we accept (malformed, DOCTYPE, entities, wrong root, too big …). */
export class XmlInputError extends OvmfHookError {
  constructor(message: string) {
    super(message, 2);
  }
}

/** The request or configuration is invalid (bad option, bad config file, missing file). */
export class UsageError extends OvmfHookError {
  constructor(message: string) {
    super(message, 2);
  }
}

/**
 * The ovmf-hook config file is unusable (unreadable, not a regular file, invalid JSON, unknown key,
 * wrong type). The hook then knows neither the archive location nor the mode: see the fail-safe
 * table in docs/GUARANTEES.md.
 */
export class ConfigError extends UsageError {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(message);
  }
}

/** The domain or host state forbids the operation (running domain, policy violation …). */
export class RefusedError extends OvmfHookError {
  constructor(message: string) {
    super(message, 1);
  }
}

/** No firmware on this host fits the request. */
export class FirmwareNotFoundError extends OvmfHookError {
  constructor(message: string) {
    super(message, 1);
  }
}

/** CODE and VARS images do not pair (2 MB vs 4 MB builds, or a wrong-size NVRAM). */
export class NvramSizeMismatch extends OvmfHookError {
  constructor(
    readonly loader: string,
    readonly template: string,
    message: string,
  ) {
    super(message, 1);
  }
}

export const isOvmfHookError = (e: unknown): e is OvmfHookError => e instanceof OvmfHookError;

/** The message of anything thrown (an Error's message, else the value as text). */
export const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** A QEMU firmware descriptor file is not valid JSON or not shaped like docs/interop/firmware.json. */
export class FirmwareDescriptorError extends OvmfHookError {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(message, 2);
  }
}

/** A UEFI variable store image (OVMF VARS / NVRAM file) is truncated, corrupt or not a variable store. */
export class VarstoreError extends OvmfHookError {
  constructor(message: string) {
    super(message, 2);
  }
}

/** A path the hook must read or write is a symlink, a hard link, not a regular file, or sits in an unsafe directory. */
export class UnsafePathError extends OvmfHookError {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message, 1);
  }
}

/** An archived NVRAM generation does not match its recorded size/sha256 (or its metadata is unreadable). */
export class ArchiveCorruptError extends OvmfHookError {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message, 1);
  }
}
