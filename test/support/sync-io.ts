/**
 * Setup of the `unit-sync-io` project (vitest.config.mts): every temp directory gets the
 * synchronous file API, as the hook gives directories on a local disk (src/io/fs-api.ts).
 */
import { realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setSyncIoRoots } from '../../src/io/fs-api';

setSyncIoRoots([tmpdir(), realpathSync(tmpdir())]);
