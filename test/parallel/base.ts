// The chain the parallel tests and the benchmark start from: a default-deny host firewall that
// ends in a DROP, so every ACCEPT must land above that line.
export const BASE_INPUT = [
  "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
  "-A INPUT -i lo -j ACCEPT",
  "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
  "-A INPUT -j DROP",
];
export const BASE = `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n${BASE_INPUT.join("\n")}\nCOMMIT\n`;
/** The engine's parallelism on this 2-core machine (pulumi's default --parallel: 4 x CPUs). */
export const PARALLEL = 8;
