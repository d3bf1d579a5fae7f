/** The schema of a PortRule's `connection` (and of its jump host, `connection.proxy`). */
import ipaddr from "ipaddr.js";
import { z } from "zod";
import { HOST_KEY_HELP, parseHostKey } from "./hostkey";
import { custom, type SameKeysAndTypes } from "./schema-kit";
import type { CheckedConnection, CheckedJumpHost } from "./types";

/** SSH handshakes in flight at once in a provider process, over all hosts (the SSH layer holds to it). */
export const MAX_DIALS = 10;
/** The default of maxConcurrentDials: SSH handshakes at once that involve one sshd. */
export const DIALS_PER_HOST = 8;

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const secret = (what: string) =>
  z.string({ error: `must be the ${what} as a string` }).min(1, { error: `must not be empty: leave it out instead` });

const proxyFields = {
  host: z
    .string({ error: 'must be the host name or IP address to connect to, e.g. "198.18.0.10"' })
    .refine(
      (h) => ipaddr.IPv4.isValidFourPartDecimal(h) || (ipaddr.IPv6.isValid(h) && !h.includes("%")) || HOSTNAME.test(h),
      {
        error:
          'must be a host name or an IPv4/IPv6 address without port or spaces, e.g. "198.18.0.10" or "web1.example.com"',
      },
    ),
  port: z
    .number({ error: "must be the SSH port as a number, e.g. 22" })
    .int({ error: "must be a whole number, e.g. 22" })
    .min(1, { error: "must be between 1 and 65535" })
    .max(65535, { error: "must be between 1 and 65535" })
    .default(22),
  user: z
    .string({ error: 'must be the login user name, e.g. "root"' })
    .regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/, {
      error: "must be a Unix user name (letters, digits, _ . -; at most 32 characters)",
    })
    .default("root"),
  password: secret("password").optional(),
  privateKey: secret("private key")
    .refine((k) => /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(k), {
      error:
        'must be the private key\'s text (it starts with -----BEGIN ... PRIVATE KEY-----), not a file path: read the file, e.g. fs.readFileSync(path, "utf8")',
    })
    .optional(),
  privateKeyPassword: secret("private key passphrase").optional(),
  agentSocketPath: z
    .string({ error: "must be the path of the ssh-agent socket, e.g. process.env.SSH_AUTH_SOCK" })
    .regex(/^\/[^\0]{0,4095}$/, { error: "must be an absolute path, e.g. /run/user/1000/ssh-agent.sock" })
    .optional(),
  dialErrorLimit: z
    .number({ error: "must be a number of connection attempts, e.g. 10" })
    .int({ error: "must be a whole number of attempts" })
    .refine((n) => n === -1 || (n >= 1 && n <= 1000), {
      error: "must be from 1 to 1000 attempts, or -1 for no limit (as in @pulumi/command)",
    })
    .default(10),
  perDialTimeout: z
    .number({ error: "must be a number of seconds, e.g. 15" })
    .min(1, { error: "must be at least 1 second: an SSH handshake and every remote step need that much" })
    .max(3600, { error: "must be at most 3600 seconds" })
    .default(15),
  maxConcurrentDials: z
    .number({ error: "must be a number of SSH handshakes at once, e.g. 4" })
    .int({ error: "must be a whole number of handshakes" })
    .min(1, { error: `must be from 1 to ${MAX_DIALS} handshakes at once` })
    .max(MAX_DIALS, {
      error: `must be at most ${MAX_DIALS}: the provider runs at most ${MAX_DIALS} SSH handshakes at once in all; leave it out for ${DIALS_PER_HOST}`,
    })
    .default(DIALS_PER_HOST),
  hostKey: z
    .string({ error: HOST_KEY_HELP })
    .transform((k, ctx) => {
      const parsed = parseHostKey(k);
      return parsed ? (parsed.publicKey ?? parsed.fingerprint) : custom(ctx, HOST_KEY_HELP);
    })
    .optional(),
};

/** @internal Not in the published types: they must not mention zod (see tsconfig's stripInternal). */
export const connectionFields = {
  ...proxyFields,
  proxy: z
    .object(proxyFields, { error: "must be the jump host's connection: { host, user, privateKey, ... }" })
    .optional(),
  sudo: z.boolean({ error: "must be true or false" }).default(false),
};

/** The schemas and the declarations in ./types have the same fields, of the same types (checked at compile time). */
const jumpHostMatchesDeclaration: SameKeysAndTypes<z.output<z.ZodObject<typeof proxyFields>>, CheckedJumpHost> = true;
const connectionMatchesDeclaration: SameKeysAndTypes<
  z.output<z.ZodObject<typeof connectionFields>>,
  CheckedConnection
> = true;
void [jumpHostMatchesDeclaration, connectionMatchesDeclaration];
