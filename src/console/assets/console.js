// The console: sign in with a passkey, see the pending holds, give a verdict that the passkey
// signs. Everything shown comes from the server as text (never as HTML).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const list = $("holds");
  let refresh = null;
  let shown = "";

  function signedIn(approver) {
    $("who").textContent = `Signed in as ${approver}`;
    $("signin").hidden = true;
    $("signout").hidden = false;
    load();
    clearInterval(refresh);
    refresh = setInterval(load, 5000);
  }

  function signedOut(message) {
    clearInterval(refresh);
    $("who").textContent = "";
    $("signin").hidden = false;
    $("signout").hidden = true;
    list.replaceChildren();
    shown = "";
    CG.say(status, message || "Sign in with your passkey to see the held transactions.");
  }

  $("signin").addEventListener("click", async () => {
    $("signin").disabled = true;
    CG.say(status, "Follow your device's prompt…");
    try {
      const start = await CG.call("/console/api/signin/start", {});
      const credential = await CG.get(start.options);
      const session = await CG.call("/console/api/signin/finish", { ceremony: start.ceremony, credential });
      CG.say(status, "");
      signedIn(session.approver);
    } catch (error) {
      CG.say(status, `Not signed in: ${error.message}`, true);
    } finally {
      $("signin").disabled = false;
    }
  });

  $("signout").addEventListener("click", async () => {
    await CG.call("/console/api/signout", {}).catch(() => {});
    signedOut("Signed out.");
  });

  async function load() {
    let data;
    try {
      data = await CG.call("/console/api/holds");
    } catch (error) {
      if (error.status === 401) return signedOut(error.message);
      return CG.say(status, `Cannot load the holds: ${error.message}`, true);
    }
    // Redrawn only when something but the clock changed, so a reason being typed survives.
    const key = JSON.stringify(data.holds.map((h) => ({ ...h, seconds_left: 0 })));
    if (key !== shown) {
      shown = key;
      render(data.holds);
    }
    for (const hold of data.holds) {
      const article = list.querySelector(`[data-id="${CSS.escape(hold.id)}"]`);
      if (article) article.querySelector(".left").textContent = duration(hold.seconds_left);
    }
    if (!data.holds.length) CG.say(status, "Nothing is waiting for a verdict.");
    else if (status.textContent.startsWith("Nothing")) CG.say(status, "");
  }

  function render(holds) {
    const outcomes = new Map([...list.querySelectorAll("article")].map((a) => [a.dataset.id, a.querySelector(".outcome").textContent]));
    list.replaceChildren(...holds.map((hold) => card(hold, outcomes.get(hold.id) || "")));
  }

  function card(hold, outcome) {
    const article = $("hold").content.firstElementChild.cloneNode(true);
    const s = hold.summary || {};
    const set = (cls, text) => (article.querySelector(cls).textContent = text);
    article.dataset.id = hold.id;
    if (s.kind === "config_change" || s.type) {
      set(".headline", `Configuration change: ${s.type || "unknown"}`);
    } else {
      const op = s.operation && s.operation !== "TRANSFER" ? `${s.operation} ` : "";
      set(".headline", `${op}${s.amount ?? "?"} ${s.asset ?? "?"}`);
    }
    set(".usd", s.usd ? `≈ ${s.usd} USD (as stated by Fireblocks)` : "not stated");
    set(".source", [s.source, s.source_name && `“${s.source_name}”`].filter(Boolean).join(" ") || "—");
    const to = article.querySelector(".destinations");
    const destinations = s.destinations || [];
    if (destinations.length) {
      const ul = document.createElement("ul");
      for (const d of destinations) {
        const li = document.createElement("li");
        const kind = [d.type, d.sub_type].filter(Boolean).join(" / ");
        li.textContent = [d.name && `“${d.name}”`, kind && `(${kind}${d.id ? ` ${d.id}` : ""})`, d.address, d.amount && `— ${d.amount}`]
          .filter(Boolean).join(" ");
        ul.append(li);
      }
      to.append(ul);
    } else {
      to.textContent = s.destination || "—";
    }
    set(".reason", hold.reason || "—");
    set(".raw", rawCheck(s.raw_check));
    set(".verdicts", verdicts(hold));
    set(".left", duration(hold.seconds_left));
    set(".ids", `${hold.id} · request ${hold.digest.slice(0, 16)}…`);
    set(".outcome", outcome);
    const why = article.querySelector(".why");
    why.id = `why-${hold.id}`;
    const approve = article.querySelector(".approve");
    const reject = article.querySelector(".reject");
    approve.setAttribute("aria-label", `Approve ${article.querySelector(".headline").textContent}`);
    reject.setAttribute("aria-label", `Reject ${article.querySelector(".headline").textContent}`);
    if (hold.you_decided) {
      approve.disabled = reject.disabled = why.disabled = true;
      set(".outcome", outcome || "You have given your verdict on this hold.");
    }
    approve.addEventListener("click", () => decide(hold, article, "approve", ""));
    reject.addEventListener("click", () => {
      const reason = why.value.trim();
      if (!reason) {
        CG.say(article.querySelector(".outcome"), "Write the reason for rejecting first.", true);
        return why.focus();
      }
      decide(hold, article, "reject", reason);
    });
    return article;
  }

  async function decide(hold, article, verdict, reason) {
    const outcome = article.querySelector(".outcome");
    const buttons = article.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    CG.say(outcome, "Confirm with your passkey…");
    try {
      const ask = await CG.call(`/console/api/holds/${encodeURIComponent(hold.id)}/options`, { verdict, reason });
      const credential = await CG.get(ask.options);
      const done = await CG.call(`/console/api/holds/${encodeURIComponent(hold.id)}/verdict`, {
        statement: ask.statement,
        credential,
      });
      const h = done.hold;
      CG.say(outcome, verdict === "approve"
        ? `Approved by ${done.approver} (${h.approvals.length} of ${h.required}); the hold is ${h.status}.`
        : `Rejected by ${done.approver}; the hold is ${h.status}.`);
      load();
    } catch (error) {
      buttons.forEach((b) => (b.disabled = false));
      CG.say(outcome, `Verdict not counted: ${error.message}`, true);
    }
  }

  function rawCheck(check) {
    if (!check) return "—";
    const conflicts = check.conflicts || [];
    const found = conflicts.length ? `CONFLICTS with the description: ${conflicts.join("; ")}` : "";
    if (!check.supplied) return found || "not supplied (nothing to compare)";
    if (!check.decoded) return found || "supplied, not checked (its asset is not in data.rawtx.assets)";
    const pays = ((check.raw && check.raw.pays) || []).map((p) => `${p.amount} to ${p.address}`).join(", ");
    return found || `matches the description: pays ${pays}`;
  }

  function verdicts(hold) {
    const parts = [`${hold.approvals.length} of ${hold.required} approvals`];
    for (const a of hold.approvals) parts.push(`approved by ${a.approver} at ${a.at}`);
    for (const r of hold.rejections) parts.push(`rejected by ${r.approver}: ${r.reason}`);
    return parts.join(" · ");
  }

  function duration(seconds) {
    const m = Math.floor(seconds / 60);
    return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m} min ${seconds % 60} s`;
  }

  CG.call("/console/api/session").then((s) => signedIn(s.approver)).catch(() => signedOut());
});
