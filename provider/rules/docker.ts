/**
 * Docker beside PortRule. A port published with `docker run -p 8080:80` is DNAT-ed in nat
 * PREROUTING (`-j DOCKER`, then `-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT
 * --to-destination 172.17.0.2:80`) and forwarded to the container through FORWARD: it never reaches
 * INPUT (moby/moby#22054). Docker's place for the operator's own rules is the DOCKER-USER chain,
 * which FORWARD jumps to first; there the packet already carries the container's port, so a rule
 * matches the port the client asked for with `-m conntrack --ctorigdstport 8080 --ctdir ORIGINAL`.
 * Placement judges Docker's DNAT as any other in nat PREROUTING (place.ts, prerouting.ts): a DROP of a
 * published port on INPUT is not effective and its reason says to write DOCKER-USER; an ACCEPT is redundant.
 */

/** The chain Docker keeps for the operator's rules (FORWARD jumps to it before Docker's own). */
export const DOCKER_USER = "DOCKER-USER";

/** Whether a rule in this chain matches the original destination port (before DNAT). */
export const matchesOriginalPort = (chain: string): boolean => chain === DOCKER_USER;
