export type { HostKeyInfo, Logger, Origin, RunOptions, RunResult, SessionStats } from "./types";
export { shellQuote, shellJoin } from "./quote";
export { describeHostKey, fingerprintOf, hostKeyMatches, parseExpectedHostKey, verifyHostKey } from "./hostkey";
export { ConnectionError, HostKeyError, RemoteError, SudoError, redact } from "./errors";
export type { ConnectionFailure } from "./errors";
export { Session, getSession, closeAll, sessionKey, MAX_CHANNELS } from "./session";
