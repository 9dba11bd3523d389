import type { CommandModule } from 'yargs';
import { configCommand } from './config';
import { convertCommand } from './convert';
import { doctorCommand } from './doctor';
import { firmwareCommand } from './firmware';
import { nvramCommand } from './nvram';
import { rewriteCommand } from './rewrite';

/** Every top-level command of the CLI, in --help order. */
export const commands: CommandModule<object, any>[] = [rewriteCommand, convertCommand, firmwareCommand, nvramCommand, configCommand, doctorCommand];
