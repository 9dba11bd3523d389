#!/usr/bin/env node
import { main } from './main';

main().then((code) => {
  process.exitCode = code;
});
