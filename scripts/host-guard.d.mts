export declare const GUARD: string;
export declare const STATE_LIB: string;
export declare const SAVED_PATHS: readonly string[];
export declare function restoreFromGuard(): void;
export declare function takeGuard(o: { label: string; waitMs?: number; onRecovered?: () => void }): Promise<void>;
