// The host layer: one locked, commit-confirmed conversation per host (HostAgent), what the lifecycle
// asks of a host and gets back, and the lockout guard.
export { DEFAULT_ROLLBACK_AFTER, HostAgent, hostAgent, IDLE_MS } from "./agent";
export { HostError } from "./errors";
export { lockoutOf, mayCutSsh } from "./lockout";
export { fileOf } from "./persist";
export { familyName } from "./protocol";
export type * from "./types";
