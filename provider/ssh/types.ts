/** Where and how to reach a host: the field names of @pulumi/command's remote.Connection, plus `sudo`. */
export interface ConnectionArgs {
  host: string;
  /** Default 22 (filled by the schema). */
  port: number;
  /** Default "root". */
  user: string;
  password?: string;
  privateKey?: string;
  privateKeyPassword?: string;
  agentSocketPath?: string;
  /** Dial attempts before giving up; -1 means no limit. Default 10. */
  dialErrorLimit: number;
  /** Seconds for one dial (TCP connect + SSH handshake + authentication). Default 15. */
  perDialTimeout: number;
  /** An OpenSSH public key line ("ssh-ed25519 AAAA...") or a fingerprint ("SHA256:..."). */
  hostKey?: string;
  /** A jump host: reached first, then a direct-tcpip channel to `host:port` carries this connection. */
  proxy?: ConnectionArgs;
  /** Run commands through `sudo -n` (the user needs NOPASSWD sudo for /bin/sh). */
  sudo: boolean;
}

/** Where log lines go (Pulumi's log in the provider, a test logger, or nothing). */
export interface Logger {
  debug?(msg: string): void;
  info?(msg: string): void;
  warn?(msg: string): void;
  error?(msg: string): void;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the command's standard input (otherwise stdin is closed at once). */
  stdin?: string;
  /** Through `sudo -n --`; defaults to the connection's `sudo`. */
  sudo?: boolean;
}

/** Where the provider's connection comes from, as the host sees it ($SSH_CONNECTION). */
export interface Origin {
  clientAddress: string;
  clientPort: number;
  serverAddress: string;
  serverPort: number;
}

export interface SessionStats {
  /** SSH connections established (including reconnects). */
  connections: number;
  /** Dial attempts that failed. */
  dialFailures: number;
  /** Exec channels opened (one per `run`). */
  channels: number;
  /** Channel opens refused by the server and retried. */
  channelRetries: number;
}
