// The registration page: one invitation, one passkey.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const token = new URLSearchParams(location.search).get("token");
  const button = document.getElementById("register");
  const status = document.getElementById("status");
  // The token stays in memory only: out of the address bar and the history.
  history.replaceState(null, "", location.pathname);
  if (!token) {
    button.disabled = true;
    CG.say(status, "This link has no invitation in it. Ask an operator for a new one.", true);
    return;
  }
  button.addEventListener("click", async () => {
    button.disabled = true;
    CG.say(status, "Follow your device's prompt to create the passkey…");
    try {
      const start = await CG.call("/console/api/register/start", { token });
      const credential = await CG.create(start.options);
      const done = await CG.call("/console/api/register/finish", { ceremony: start.ceremony, credential });
      CG.say(status, `Passkey registered for ${done.approver}. You can now sign in to the console.`);
      document.getElementById("next").hidden = false;
    } catch (error) {
      button.disabled = false;
      CG.say(status, `Not registered: ${error.message}`, true);
    }
  });
});
