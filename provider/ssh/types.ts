/** A host key as seen at connect time. */
export interface HostKeyInfo {
  /** The key type, e.g. "ssh-ed25519". */
  algorithm: string;
  /** "SHA256:<base64 without padding>", exactly as `ssh-keygen -lf` prints it. */
  fingerprint: string;
  /** "<type> <base64>", as in a known_hosts or .pub file (without a comment). */
  publicKey: string;
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
  /** Through `sudo -n --`; defaults to the connection's `sudo`. */
  sudo?: boolean;
}

/** Where the provider's connection comes from, as the host sees it ($SSH_CONNECTION). */
export interface Origin {
  clientAddress: string;
  clientPort: number;
  serverAddress: string;
  serverPort: number;
  /** The interface the host routes the client's address through (`ip route get`): where the connection's
   * packets arrive, routing being symmetric; undefined where the host has no `ip`. */
  inInterface?: string;
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
