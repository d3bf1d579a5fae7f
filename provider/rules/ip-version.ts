// Which families a rule covers when its inputs do not say (`ipVersion` left out): both, as ufw and
// firewalld do, so a DROP never leaves the port open over IPv6 by surprise. A rule created while the
// default was ipv4 (state without `defaults`) keeps ipv4 until it is replaced: an upgrade changes
// nothing on the host by itself.
import { REJECT_TYPES } from "./render";
import { UNKNOWN } from "./schema-kit";
import type { RuleInputs } from "./types";

type IpVersion = RuleInputs["ipVersion"];

/** What ipVersion defaulted to before it defaulted to both. */
export const FORMER_DEFAULT: IpVersion = "ipv4";

/** Defaults a rule keeps from the version that created it, recorded in state: the former default (ipv4),
 * kept by a rule created without ipVersion before the default changed. */
type KeptDefaults = NonNullable<RuleInputs["defaults"]>;

/** The one family a value names, if it names one: a source network, or an ICMP type of one family. */
function familyNamed(source: unknown, rejectWith: unknown): IpVersion | typeof UNKNOWN | undefined {
  if (source === UNKNOWN) return UNKNOWN;
  if (typeof source === "string") return source.includes(":") ? "ipv6" : "ipv4";
  if (typeof rejectWith !== "string" || rejectWith === "tcp-reset") return undefined;
  if (REJECT_TYPES[4].includes(rejectWith)) return "ipv4";
  if (REJECT_TYPES[6].includes(rejectWith)) return "ipv6";
  return undefined;
}

/**
 * ipVersion for inputs that leave it out (`news`, raw), given the rule's previous checked inputs (`olds`,
 * empty for a new rule or a replacement): the family a `source` or a family's `rejectWith` names; else
 * what the rule kept from its creation (`kept`); else both.
 */
export function defaultIpVersion(
  news: Record<string, unknown>,
  olds: Record<string, unknown>,
): { ipVersion: IpVersion | typeof UNKNOWN; kept?: IpVersion } {
  const named = familyNamed(news.source, news.rejectWith);
  if (named) return { ipVersion: named };
  const recorded = olds.defaults as KeptDefaults | undefined;
  const kept =
    recorded?.ipVersion ??
    (Object.keys(olds).length > 0 && recorded === undefined && olds.ipVersion === FORMER_DEFAULT
      ? FORMER_DEFAULT
      : undefined);
  return kept ? { ipVersion: kept, kept } : { ipVersion: "both" };
}

/** The warning for a DROP/REJECT that keeps the former default: IPv6 reaches the port past it. */
export const keptDefaultWarning = (inputs: RuleInputs) =>
  `${inputs.identity?.name ?? "this PortRule"}: ${inputs.action} of ${inputs.protocol} ${inputs.ports} on ${inputs.connection.host} was created when ipVersion defaulted to ipv4 ` +
  `and stays ipv4, so the port is still reachable over IPv6: set ipVersion: "both" to block IPv6 too ` +
  `(replaces the rule), or ipVersion: "ipv4" to keep it as it is`;
