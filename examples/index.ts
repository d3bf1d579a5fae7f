// Allows one port and blocks another on a Linux host, over SSH, for IPv4 and IPv6.
// Stack config: host, user (default root), privateKey (secret), optional hostKey,
// allowPort (default 2222), blockPort (default 8080).
import * as pulumi from "@pulumi/pulumi";
import { PortRule } from "pulumi-iptables";

const config = new pulumi.Config();
const connection = {
  host: config.require("host"),
  port: config.getNumber("sshPort"),
  user: config.get("user") ?? "root",
  privateKey: config.requireSecret("privateKey"),
  hostKey: config.get("hostKey"),
};

const allow = new PortRule("allow-app", {
  connection,
  port: config.getNumber("allowPort") ?? 2222,
  protocol: "tcp",
  action: "ACCEPT",
  ipVersion: "both",
  comment: "app",
});

const block = new PortRule("block-admin", {
  connection,
  port: config.getNumber("blockPort") ?? 8080,
  protocol: "tcp",
  action: "DROP",
  ipVersion: "both",
  comment: "old admin UI",
});

export const allowed = {
  rules: allow.rules,
  insertedAt: allow.insertedAt,
  placement: allow.placement,
  packets: allow.packets,
  listening: allow.listening,
};
export const blocked = {
  rules: block.rules,
  insertedAt: block.insertedAt,
  placement: block.placement,
  packets: block.packets,
};
export const backend = allow.backend;
export const hostKeyFingerprint = allow.hostKeyFingerprint;
