/**
 * pulumi-iptables/rules: the pure rule core (no I/O). Validate PortRule inputs, render a rule as
 * the argv `iptables -S` prints back, parse what a host lists, and decide where a rule goes.
 */
export { check } from "./check";
export { keptDefaultWarning } from "./ip-version";
export type { CheckFailure } from "./check";
export { DIALS_PER_HOST, MAX_DIALS } from "./connection-schema";
export { isUnknown, UNKNOWN } from "./schema-kit";
export type {
  Backend,
  CheckedConnection,
  CheckedJumpHost,
  CheckedPort,
  Connection,
  Family,
  FamilyName,
  Identity,
  JumpHost,
  PortItem,
  PortRange,
  PortRuleInputs,
  Position,
  Protocol,
  RuleInputs,
  TableName,
} from "./types";
export { BUILTIN_CHAINS, TABLES } from "./names";
export { FLAGS, type Flag, type MatchKey, type Neg, type RuleMatch } from "./flags";
export { renderRule, ruleText, NEUTRAL_REJECT_TYPES, REJECT_TYPES } from "./render";
export { makeTag, tagOf, MAX_COMMENT_BYTES, MAX_TAG_BYTES, TAG_PREFIX } from "./tag";
export {
  chainOf,
  listingLines,
  parseRuleset,
  parseSpec,
  parseVersion,
  PartialListingError,
  RulesetParseError,
} from "./parse";
export type { Chain, Counters, IptablesVersion, MatchOption, Rule, RuleSpec, Ruleset, Table } from "./parse";
export { findByTag, findRule, impostors, shown } from "./identity";
export { placeRule, PlacementError, possibleVerdicts, shadowing } from "./place";
export { distinctInterfaces } from "./match";
export type { HostContext, Scope } from "./place";
export { closedListing, editedFrom, KNOWN_TARGETS } from "./walk";
export type { OtherBackend } from "./backends";
export { matchesPacket, mayOverlap, strictlyWithin } from "./overlap";
export type { Packet } from "./overlap";
export { nftVerdicts } from "./nft";
export { NftParseError, parseNft } from "./nft-parse";
export type { NftJudgement, NftPackets } from "./nft";
export type { NftRuleset } from "./nft-parse";
export { blobType, fingerprintOf, HOST_KEY_HELP, parseHostKey } from "./hostkey";
export type { ExpectedHostKey } from "./hostkey";
export { DOCKER_USER, matchesOriginalPort } from "./docker";
export type { Placement, Shadow } from "./place";
