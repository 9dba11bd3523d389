/** Configuration: the schema and the one table of defaults (pure; src/io/config.ts reads the file). */
export * from './config';
