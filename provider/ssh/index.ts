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
export {
  ConnectionError,
  HostKeyError,
  REDACTED,
  RemoteError,
  SudoError,
  redact,
  redactError,
  secretsOf,
} from "./errors";
export type { ConnectionFailure } from "./errors";
export { Session, getSession } from "./session";
export { addressOf, closeAll, sessionKey } from "./pool";
export { MAX_CHANNELS } from "./channels";
export { asksPassword } from "./prompts";
export type { Prompt } from "./prompts";
export { dialForeseen, foresee, foreseenCount } from "./early";
export { unusableKeys } from "./dial";
export { DialLimiter, dials } from "./dials";
export type { DialSlot } from "./dials";
