/**
 * What the CLI does with an error a command threw: one line on stderr (`ovmf-hook: …`; with
 * --debug also the stack) and the exit code: the error's own for OvmfHookError, 70 otherwise.
 */
import { errorMessage, isOvmfHookError } from '../core/errors';

export function reportError(e: unknown, debug: boolean): number {
  if (isOvmfHookError(e)) {
    process.stderr.write(`ovmf-hook: ${e.message}\n`);
    if (debug) process.stderr.write(`${e.stack}\n`);
    return e.exitCode;
  }
  process.stderr.write(`ovmf-hook: internal error: ${errorMessage(e)}\n`);
  if (debug) process.stderr.write(`${(e as Error)?.stack}\n`);
  return 70;
}
