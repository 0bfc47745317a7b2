// Who the agent is: the name entered once (x-agent-id) and an optional API key, kept for the browser tab.

const AGENT_KEY = "customer-context.agent";
const API_KEY = "customer-context.api-key";

export interface Session {
  agent: string;
  apiKey: string;
}

export function loadSession(): Session | null {
  const agent = sessionStorage.getItem(AGENT_KEY);
  if (!agent) return null;
  return { agent, apiKey: sessionStorage.getItem(API_KEY) ?? "" };
}

export function saveSession(session: Session): void {
  sessionStorage.setItem(AGENT_KEY, session.agent);
  if (session.apiKey) sessionStorage.setItem(API_KEY, session.apiKey);
  else sessionStorage.removeItem(API_KEY);
}

export function clearSession(): void {
  sessionStorage.removeItem(AGENT_KEY);
  sessionStorage.removeItem(API_KEY);
}
