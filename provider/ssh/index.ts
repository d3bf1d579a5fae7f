export type { HostKeyInfo, Logger, Origin, RunOptions, RunResult, SessionStats } from "./types";
export { shellQuote, shellJoin } from "./quote";
export {
  describeHostKey,
  fingerprintOf,
  forgetPins,
  hostKeyMatches,
  parseExpectedHostKey,
  pinHostKey,
  pinsOf,
} from "./hostkey";
export type { Pin } from "./hostkey";
export { ConnectionError, HostKeyError, REDACTED, RemoteError, SudoError, redact, redactError } from "./errors";
export type { ConnectionFailure } from "./errors";
export { Session, addressOf, getSession, closeAll, sessionKey, MAX_CHANNELS } from "./session";
export { asksPassword } from "./prompts";
export type { Prompt } from "./prompts";
export { dialForeseen, foresee, foreseenCount } from "./early";
export { DialLimiter, dials } from "./dials";
export type { DialSlot } from "./dials";
