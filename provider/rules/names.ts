/** iptables' own names, written once: its tables, their built-in chains, the protocols a PortRule takes. */

/** iptables' own tables (what iptables-save lists; iptables-nft keeps them as nft tables of these names). */
export const TABLES = ["filter", "nat", "mangle", "raw", "security"] as const;

/** Built-in chains per table. */
export const BUILTIN_CHAINS: Readonly<Record<string, readonly string[]>> = {
  filter: ["INPUT", "FORWARD", "OUTPUT"],
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
  mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
  raw: ["PREROUTING", "OUTPUT"],
  security: ["INPUT", "FORWARD", "OUTPUT"],
} satisfies Record<(typeof TABLES)[number], readonly string[]>;

/** Which way the packets travel: to the host (INPUT), through it (FORWARD), from it (OUTPUT). */
export type Hook = "in" | "forward" | "out";

/** The way the packets of each built-in chain travel (OUTPUT and POSTROUTING have no input interface). */
export const HOOKS: Readonly<Record<string, Hook>> = {
  INPUT: "in",
  PREROUTING: "in",
  FORWARD: "forward",
  OUTPUT: "out",
  POSTROUTING: "out",
};

/** The protocols a PortRule opens or blocks. */
export const PROTOCOLS = ["tcp", "udp"] as const;

/** Every built-in chain of any table. */
export const ALL_BUILTINS: readonly string[] = [...new Set(Object.values(BUILTIN_CHAINS).flat())];
