/** Types of scripts/build.mjs for the tests. */
export interface BuildOptions {
  /** the repository to build (default: the one this script is in) */
  root?: string;
  /** where hooks/qemu and cli.cjs go (default: <root>/dist) */
  outDir?: string;
  /** train and embed the V8 code caches (default true); the build throws when a training run fails */
  codeCache?: boolean;
  /** the hook's shebang and the node that trains the caches (default /usr/bin/node) */
  node?: string;
}
export interface BuildResult {
  hook: string;
  cli: string;
  /** bytes of each code cache, 0: none */
  hookCache: number;
  cliCache: number;
}
export declare function buildProduct(options?: BuildOptions): Promise<BuildResult>;
