import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Lab and e2e tests drive real sshd, iptables and the real pulumi CLI.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    reporters: ["default"],
    // `npm run test:unit` measures line coverage of the provider's code (rootless, no lab).
    coverage: {
      provider: "v8",
      include: ["provider/**/*.ts"],
      reporter: ["text-summary", "text"],
    },
  },
});
