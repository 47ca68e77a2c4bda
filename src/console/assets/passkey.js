// Shared by the console's pages: calls to the console API, and WebAuthn options and credentials
// between their JSON form (base64url) and the browser's (ArrayBuffers). No framework, no build.
"use strict";

const CG = (() => {
  const decode = (text) => {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  };
  const encode = (buffer) =>
    btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const withIds = (list) => (list || []).map((c) => ({ ...c, id: decode(c.id) }));

  async function call(path, body) {
    const init = { credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.message || response.statusText);
      error.code = data.error;
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // navigator.credentials.create with the server's options; the new credential as JSON.
  async function create(options) {
    const o = options.publicKey;
    const publicKey = {
      ...o,
      challenge: decode(o.challenge),
      user: { ...o.user, id: decode(o.user.id) },
      excludeCredentials: withIds(o.excludeCredentials),
    };
    const credential = await navigator.credentials.create({ publicKey });
    const r = credential.response;
    return {
      id: credential.id,
      rawId: encode(credential.rawId),
      type: credential.type,
      response: {
        attestationObject: encode(r.attestationObject),
        clientDataJSON: encode(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : [],
      },
      extensions: credential.getClientExtensionResults(),
    };
  }

  // navigator.credentials.get with the server's options; the assertion as JSON.
  async function get(options) {
    const o = options.publicKey;
    const publicKey = { ...o, challenge: decode(o.challenge), allowCredentials: withIds(o.allowCredentials) };
    const credential = await navigator.credentials.get({ publicKey });
    const r = credential.response;
    return {
      id: credential.id,
      rawId: encode(credential.rawId),
      type: credential.type,
      response: {
        authenticatorData: encode(r.authenticatorData),
        clientDataJSON: encode(r.clientDataJSON),
        signature: encode(r.signature),
        userHandle: r.userHandle ? encode(r.userHandle) : null,
      },
      extensions: credential.getClientExtensionResults(),
    };
  }

  // Sets a live region's text (screen readers announce it).
  function say(element, text, isError) {
    element.textContent = text;
    element.classList.toggle("error", Boolean(isError));
  }

  return { call, create, get, say };
})();
