// Entry point: sign in (agent name, optional API key; kept for this tab), then start the gadget.

import "../style.css";
import { connect } from "./api.js";
import { App } from "./app.js";
import { byId } from "./dom.js";
import { clearSession, loadSession, saveSession, type Session } from "./session.js";

function start(session: Session): void {
  byId("sign-in").hidden = true;
  byId("app").hidden = false;
  byId("agent-name").textContent = session.agent;
  byId("sign-out").hidden = false;
  const app = new App(connect(session), session.agent);
  app.start();
  byId("sign-out").addEventListener("click", () => {
    if (!app.confirmLeave()) return;
    app.live.stop();
    clearSession();
    window.location.reload();
  });
}

function signIn(): void {
  const form = byId<HTMLFormElement>("sign-in");
  const agent = byId<HTMLInputElement>("sign-in-agent");
  const key = byId<HTMLInputElement>("sign-in-key");
  form.hidden = false;
  agent.focus();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = agent.value.trim();
    if (!name) {
      agent.focus();
      return;
    }
    const session = { agent: name, apiKey: key.value.trim() };
    saveSession(session);
    start(session);
  });
}

function boot(): void {
  const session = loadSession();
  if (session) start(session);
  else signIn();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();
