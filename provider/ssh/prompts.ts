/** A keyboard-interactive prompt, as ssh2 hands it over. */
export interface Prompt {
  prompt: string;
  echo?: boolean;
}

/** "Password" in pam_unix's "Password: " and its Linux-PAM translations (de, fr, es, pt, ru, ja, zh). */
const PASSWORD = "password|passwort|kennwort|mot de passe|contraseña|senha|пароль|パスワード|密码";

/**
 * The account's password asked for, and nothing else: "Password:", "LDAP Password:", "Password for
 * alice@EXAMPLE.COM:" (Kerberos), "alice@host's password:". Not a one-time password ("One-time password
 * (OATH) for `alice':"), a passcode ("Enter PASSCODE:"), a verification code or a PIN, nor a new password.
 */
const PASSWORD_PROMPT = new RegExp(
  `^(?:(?:\\S+'s|ldap|unix|kerberos)\\s+)?(?:${PASSWORD})(?:\\s+for\\s+\\S+)?\\s*[:：]?$`,
  "iu",
);

/** Whether one keyboard-interactive round is a password prompt: one prompt, not echoed, asking for the
 * password only (PASSWORD_PROMPT). The password goes to nothing else. */
export function asksPassword(prompts: readonly Prompt[]): boolean {
  return prompts.length === 1 && !prompts[0].echo && PASSWORD_PROMPT.test(prompts[0].prompt.trim());
}
