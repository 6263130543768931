// The MARS example website: OAuth 2 authorization code flow with PKCE, as a public client.
// No framework, no build step. See docs/frontend.md.
"use strict";

const REFRESH_KEY = "mars.refresh_token"; // sessionStorage: the (rotating) refresh token
const STATE_KEY = "mars.oauth_state"; // sessionStorage: `state` of the sign-in under way
const VERIFIER_KEY = "mars.code_verifier"; // sessionStorage: its PKCE code_verifier
// sessionStorage: the ID token of the sign-in (scope openid), sent back as the sign-out's
// id_token_hint: it proves the sign-out comes from this site, so MARS does not ask
const ID_TOKEN_KEY = "mars.id_token";

let config = null; // config.json: mars, client_id, redirect_uri, post_logout_redirect_uri, scope
let accessToken = null; // in memory only: gone when the page is
let accessExpiresAt = 0; // when to refresh it, ms since the epoch
let refreshing = null; // the refresh under way: never two at once (reuse detection)
let waitUntil = 0; // after a 429, no API request before this time (ms since the epoch)

const $ = (id) => document.getElementById(id);

function clearStorage() {
  for (const key of [REFRESH_KEY, STATE_KEY, VERIFIER_KEY, ID_TOKEN_KEY]) {
    sessionStorage.removeItem(key);
  }
}

// --- What the page shows ---------------------------------------------------------------------

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function showSignedOut() {
  accessToken = null;
  $("signed-in").hidden = true;
  $("signed-out").hidden = false;
  $("who").textContent = "";
  $("projects").replaceChildren();
  $("status").textContent = "signed-out";
}

function showSignedIn(me, projects) {
  // `me` or `projects` is null when an API request failed (the error says why).
  const name = me && me.display_name ? `${me.display_name} (${me.email})` : me ? me.email : "";
  $("who").textContent = me ? `Signed in as ${name}` : "";
  $("projects").replaceChildren(
    ...(projects || []).map((project) => {
      const item = document.createElement("li");
      item.textContent = project.name;
      return item;
    }),
  );
  $("no-projects").hidden = !projects || projects.length > 0;
  $("signed-out").hidden = true;
  $("signed-in").hidden = false;
  $("status").textContent = "signed-in";
}

// --- Random values and PKCE ------------------------------------------------------------------

function base64url(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(byteCount = 32) {
  // 32 random bytes: 43 base64url characters (a code_verifier may have 43 to 128).
  return base64url(crypto.getRandomValues(new Uint8Array(byteCount)));
}

async function codeChallenge(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(digest);
}

// --- The OAuth endpoints (RFC 6749 errors) ---------------------------------------------------

class OAuthError extends Error {
  constructor(code, description) {
    super(description ? `${description} (${code})` : code);
    this.code = code;
  }
}

async function postForm(path, fields) {
  return fetch(`${config.mars}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams(fields),
    credentials: "omit", // tokens, not cookies
  });
}

async function tokenRequest(fields) {
  const response = await postForm("/oauth/token", { ...fields, client_id: config.client_id });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new OAuthError(body.error || `http_${response.status}`, body.error_description);
  }
  accessToken = body.access_token;
  // Refresh a little before expiry (30 s, or half the lifetime of a short-lived token).
  const lifetime = (Number(body.expires_in) || Infinity) * 1000;
  accessExpiresAt = Date.now() + lifetime - Math.min(30000, lifetime / 2);
  if (body.id_token) sessionStorage.setItem(ID_TOKEN_KEY, body.id_token); // at sign-in only
  if (body.refresh_token) {
    sessionStorage.setItem(REFRESH_KEY, body.refresh_token); // the old one is now spent
  } else {
    sessionStorage.removeItem(REFRESH_KEY);
  }
}

function refresh() {
  // One refresh at a time: sending the same refresh token twice revokes the whole sign-in.
  if (refreshing) return refreshing;
  refreshing = (async () => {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    accessToken = null;
    if (!refreshToken) throw new OAuthError("invalid_grant", "Please sign in.");
    try {
      await tokenRequest({ grant_type: "refresh_token", refresh_token: refreshToken });
    } catch (error) {
      if (error.code !== "invalid_grant") throw error; // MARS unreachable, 429...: keep it
      // Expired, revoked, signed out, or used twice: this sign-in is over.
      clearStorage();
      throw new OAuthError("invalid_grant", "Your sign-in has ended. Please sign in again.");
    }
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

// --- The API (RFC 9457 problems) -------------------------------------------------------------

class ApiError extends Error {}

// A structured-field list (RFC 9651) such as `"default";r=0;t=41, "create_project";r=29;t=41`:
// [{name: "default", params: {r: "0", t: "41"}}, ...]. Quoted strings may hold `,` and `;`.
const SF_MEMBER = /\s*("(?:[^"\\]|\\.)*"|[^\s;,]+)((?:"(?:[^"\\]|\\.)*"|[^",])*)(?:,|$)/y;
const SF_PARAM = /;\s*([a-z*][a-z0-9_.*-]*)(?:=("(?:[^"\\]|\\.)*"|[^\s;,]*))?/g;
const unquote = (text) => text.replace(/^"(.*)"$/s, "$1").replace(/\\(.)/g, "$1");

function parseList(value) {
  const members = [];
  SF_MEMBER.lastIndex = 0;
  let match;
  while (SF_MEMBER.lastIndex < value.length && (match = SF_MEMBER.exec(value))) {
    const params = {};
    for (const [, key, raw = "?1"] of match[2].matchAll(SF_PARAM)) params[key] = unquote(raw);
    members.push({ name: unquote(match[1]), params });
  }
  return members;
}

function rateLimited(response) {
  // Retry-After: seconds (or an HTTP date). Wait that long before any other API request.
  const retryAfter = response.headers.get("Retry-After") || "";
  let seconds = /^\d+$/.test(retryAfter)
    ? Number(retryAfter)
    : Math.ceil((Date.parse(retryAfter) - Date.now()) / 1000);
  if (!(seconds > 0)) seconds = 60;
  waitUntil = Date.now() + seconds * 1000;
  const spent = parseList(response.headers.get("RateLimit") || "")
    .filter((policy) => policy.params.r === "0")
    .map((policy) => `"${policy.name}", whole again in ${policy.params.t} s`);
  const which = spent.length ? ` Used up: ${spent.join("; ")}.` : "";
  return new ApiError(`Too many requests. Please wait ${seconds} seconds.${which}`);
}

async function api(path, retried = false) {
  if (Date.now() < waitUntil) {
    const seconds = Math.ceil((waitUntil - Date.now()) / 1000);
    throw new ApiError(`Too many requests. Please wait ${seconds} seconds.`);
  }
  if (!accessToken || Date.now() > accessExpiresAt) await refresh();
  const response = await fetch(`${config.mars}${path}`, {
    headers: { Authorization: `Bearer ${accessToken}`, Accept: "application/json" },
    credentials: "omit",
  });
  if (response.status === 401 && !retried) {
    await refresh(); // the token may have been revoked or expired early: one refresh, one retry
    return api(path, true);
  }
  if (response.status === 429) throw rateLimited(response);
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    const lines = [[problem.title, problem.detail].filter(Boolean).join(" ")];
    for (const error of problem.errors || []) lines.push(`${error.pointer || ""}: ${error.detail}`);
    if (problem.request_id) lines.push(`Request id: ${problem.request_id}`);
    if (response.status === 401) accessToken = null; // refused even after a refresh
    throw new ApiError(lines.join("\n").trim() || `The request failed (HTTP ${response.status}).`);
  }
  return response.json();
}

async function loadAccount() {
  let me = null;
  try {
    me = await api("/api/v1/me");
    const projects = [];
    let page = await api("/api/v1/projects");
    projects.push(...page.items);
    for (let pages = 1; page.next_cursor && pages < 50; pages += 1) {
      page = await api(`/api/v1/projects?cursor=${encodeURIComponent(page.next_cursor)}`);
      projects.push(...page.items);
    }
    showSignedIn(me, projects);
  } catch (error) {
    // Still signed in (a 403, a 429, a 5xx): show what there is, and the error.
    if (!(error instanceof ApiError) || !accessToken) throw error;
    showError(error.message);
    showSignedIn(me, null);
  }
}

// --- Sign in, the way back, sign out ---------------------------------------------------------

async function signIn() {
  const state = randomString();
  const verifier = randomString();
  sessionStorage.setItem(STATE_KEY, state);
  sessionStorage.setItem(VERIFIER_KEY, verifier);
  const url = new URL(`${config.mars}/oauth/authorize`);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: config.redirect_uri,
    scope: config.scope,
    state,
    code_challenge: await codeChallenge(verifier),
    code_challenge_method: "S256",
  });
  window.location.assign(url);
}

async function finishSignIn(params) {
  const expected = sessionStorage.getItem(STATE_KEY);
  const verifier = sessionStorage.getItem(VERIFIER_KEY);
  sessionStorage.removeItem(STATE_KEY); // each state and verifier serves once
  sessionStorage.removeItem(VERIFIER_KEY);
  if (!expected || params.get("state") !== expected) {
    throw new OAuthError("invalid_state", "This sign-in answer was not asked for by this page.");
  }
  if (params.get("error") === "access_denied") {
    throw new OAuthError("access_denied", "You did not allow this website to use your account.");
  }
  if (params.has("error")) {
    throw new OAuthError(params.get("error"), params.get("error_description"));
  }
  await tokenRequest({
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: config.redirect_uri,
    code_verifier: verifier,
  });
}

async function signOut() {
  const refreshToken = sessionStorage.getItem(REFRESH_KEY);
  if (refreshToken) {
    // Revoking the refresh token revokes its access tokens too. /oauth/logout below revokes
    // this browser's refresh tokens of the app anyway, so a failure here is not fatal.
    await postForm("/oauth/revoke", {
      token: refreshToken,
      token_type_hint: "refresh_token",
      client_id: config.client_id,
    }).catch(() => {});
  }
  const idToken = sessionStorage.getItem(ID_TOKEN_KEY);
  accessToken = null;
  clearStorage();
  const url = new URL(`${config.mars}/oauth/logout`);
  const params = {
    client_id: config.client_id,
    post_logout_redirect_uri: config.post_logout_redirect_uri,
    state: randomString(),
  };
  // With it MARS signs the person out at once; without, MARS asks them to confirm.
  if (idToken) params.id_token_hint = idToken;
  url.search = new URLSearchParams(params);
  window.location.assign(url);
}

function explain(error) {
  if (error instanceof OAuthError || error instanceof ApiError) return error.message;
  return `MARS could not be reached (${error.message}).`;
}

async function start() {
  // Read the answer of /oauth/authorize, then take it out of the address bar at once, so that a
  // reload, a bookmark or the history never holds the code.
  const params = new URLSearchParams(window.location.search);
  if (params.has("code") || params.has("error") || params.has("state")) {
    window.history.replaceState(null, "", window.location.pathname + window.location.hash);
  }
  try {
    const response = await fetch("config.json", { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
    config = await response.json();
    config.mars = String(config.mars).replace(/\/+$/, "");
    if (Array.isArray(config.scope)) config.scope = config.scope.join(" ");
  } catch (error) {
    showError(`This page is not configured: ${error.message}`);
    showSignedOut();
    return;
  }
  $("sign-in").addEventListener("click", () => {
    $("sign-in").disabled = true; // one state and verifier per sign-in
    signIn().catch((e) => {
      $("sign-in").disabled = false;
      showError(explain(e));
    });
  });
  $("sign-out").addEventListener("click", () => {
    $("sign-out").disabled = true;
    signOut().catch((e) => showError(explain(e)));
  });

  try {
    if (params.has("code") || params.has("error")) {
      try {
        await finishSignIn(params);
      } catch (error) {
        if (error.code !== "invalid_state") throw error;
        showError(explain(error)); // not exchanged; carry on as if it never came
      }
    } else if (params.has("state")) {
      // Back from /oauth/logout: signed out of MARS too.
      sessionStorage.removeItem(REFRESH_KEY);
    }
    if (!accessToken && !sessionStorage.getItem(REFRESH_KEY)) {
      showSignedOut();
      return;
    }
    await loadAccount();
  } catch (error) {
    showError(explain(error));
    showSignedOut();
  }
}

// Back to this page from MARS through the back button, out of the browser's page cache: its
// state may be stale (signed out meanwhile, buttons disabled). Start afresh.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) window.location.reload();
});

start();
