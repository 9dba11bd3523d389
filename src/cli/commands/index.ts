import type { CommandModule } from 'yargs';
import { firmwareCommand } from './firmware';

/** Every top-level command of the CLI, in --help order. */
export const commands: CommandModule<object, any>[] = [firmwareCommand];
