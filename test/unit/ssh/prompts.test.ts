// Issue 20, item 6: keyboard-interactive gives the password to a password prompt only. The prompts are
// the ones real PAM modules and servers send (as their sources write them, trailing space included).
import { describe, expect, it } from "vitest";
import { asksPassword } from "../../../provider/ssh";

const one = (prompt: string, echo = false) => [{ prompt, echo }];

describe("asksPassword: which keyboard-interactive round gets the password", () => {
  it.each([
    "Password: ", // pam_unix (pam_get_authtok), pam_userdb, pam_sss, sshd's own
    "Password:",
    "password: ",
    "LDAP Password: ", // pam_ldap
    "Password for alice@EXAMPLE.COM: ", // pam_krb5
    "alice@203.0.113.10's password: ", // OpenSSH's wording, sent by some servers
    "Passwort: ", // pam_unix, de
    "Mot de passe : ", // pam_unix, fr
    "Contraseña: ", // pam_unix, es
    "Senha: ", // pam_unix, pt_BR
    "Пароль: ", // pam_unix, ru
    "パスワード:", // pam_unix, ja
    "密码：", // pam_unix, zh_CN
  ])("answers %j", (prompt) => {
    expect(asksPassword(one(prompt))).toBe(true);
  });

  it.each([
    "Enter PASSCODE: ", // RSA SecurID (pam_securid)
    "Enter PASSCODE:",
    "One-time password (OATH) for `alice': ", // pam_oath
    "Verification code: ", // pam_google_authenticator
    "Password & verification code: ", // pam_google_authenticator, forward_pass
    "Passcode or option (1-3): ", // pam_duo
    "YubiKey for `alice': ", // pam_yubico
    "First Factor: ", // pam_sss with FreeIPA OTP
    "Second Factor: ",
    "Second Factor (optional): ",
    "New password: ", // pam_unix, expired password
    "Retype new password: ",
    "Current password: ",
    "(current) UNIX password: ", // older pam_unix
    "Enter new UNIX password: ",
    "PIN: ",
    "Token: ",
    "Response: ", // challenge-response (pam_radius)
    "",
  ])("declines %j", (prompt) => {
    expect(asksPassword(one(prompt))).toBe(false);
  });

  it("declines a prompt that echoes what is typed, and a round of several prompts", () => {
    expect(asksPassword(one("Password: ", true))).toBe(false);
    expect(asksPassword([{ prompt: "Password: " }, { prompt: "Verification code: " }])).toBe(false);
    expect(asksPassword([])).toBe(false);
  });
});
