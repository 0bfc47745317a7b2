// The page's one live stream: WatchService.OpenWatch for events, UpdateWatch to steer it.
//
// The page says what it wants (records watched, records being edited) and this module keeps the server's stream in
// step: one UpdateWatch at a time, numbered 1, 2, 3… per stream, carrying the difference between what the page
// wants and what the stream already has. Every event carries a cursor; when heartbeats stop (2.5 intervals), the
// stream ends or fails, or UpdateWatch answers WATCH_NOT_FOUND, the stream is reopened with resume_after = the last
// cursor and the same subscriptions, after a backoff, so nothing is missed and nothing is delivered twice. An
// UpdateWatch answered UNAVAILABLE (a server shutting down) reopens it too; one answered for a stream already
// gone is dropped, since the next stream gets everything the page wants.

import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { Api } from "./api.js";
import { connectError, errorInfo } from "./api.js";
import { sleep } from "./dom.js";
import type { ResourceRef } from "./gen/customer_context/v1/common_pb.js";
import {
  type InteractionRouted,
  type PresenceChanged,
  type ResourceChanged,
  SetEditingSchema,
  SubscribeSchema,
  UnsubscribeSchema,
  type WatchEvent,
  type WatchRequest,
  WatchRequestSchema,
} from "./gen/customer_context/v1/watch_pb.js";
import { refKey } from "./format.js";

/** Heartbeat interval asked of the server. */
export const HEARTBEAT_SECONDS = 10;
/** A stream silent for this many heartbeat intervals is taken for dead. */
const SILENCE_INTERVALS = 2.5;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30_000;

export type LiveState = "connecting" | "live" | "reconnecting";

export interface LiveHandlers {
  changed(event: ResourceChanged): void;
  presence(event: PresenceChanged): void;
  routed(event: InteractionRouted): void;
  /** The stream missed events: reload what is on screen. */
  resync(reason: string): void;
  state(state: LiveState, detail: string): void;
}

export class Live {
  /** What the page wants watched: key → the record at the version on screen. */
  private readonly wanted = new Map<string, ResourceRef>();
  /** What the page is editing (keys of `wanted`). */
  private readonly editing = new Set<string>();
  /** What the current stream has been given. */
  private readonly subscribed = new Map<string, ResourceRef>();
  private readonly editingSent = new Set<string>();

  private cursor = 0n;
  private watchId = "";
  private sequence = 0n;
  private stream: AbortController | null = null;
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  private flushing = false;
  private stopped = false;
  private attempt = 0;

  constructor(
    private readonly api: Api,
    private readonly handlers: LiveHandlers,
  ) {}

  /** Opens the stream and keeps it open until stop(). */
  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.stream?.abort();
  }

  /** Watches `ref` (its known_version: the version on screen). */
  watch(ref: ResourceRef): void {
    this.wanted.set(refKey(ref), ref);
    this.flush();
  }

  /** Keeps the version on screen current, for the next (re)subscription. */
  seen(ref: ResourceRef): void {
    const key = refKey(ref);
    if (this.wanted.has(key)) this.wanted.set(key, ref);
  }

  unwatch(ref: ResourceRef): void {
    const key = refKey(ref);
    this.wanted.delete(key);
    this.editing.delete(key);
    this.flush();
  }

  /** Marks the agent as editing `ref` (a dirty form) or no longer editing it. */
  setEditing(ref: ResourceRef, editing: boolean): void {
    const key = refKey(ref);
    if (editing === this.editing.has(key)) return;
    if (editing) {
      if (!this.wanted.has(key)) this.wanted.set(key, ref);
      this.editing.add(key);
    } else {
      this.editing.delete(key);
    }
    this.flush();
  }

  /** Reopens the stream now (resuming after the last cursor). */
  reconnect(): void {
    this.stream?.abort();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const controller = new AbortController();
      this.stream = controller;
      this.watchId = "";
      this.sequence = 0n;
      this.subscribed.clear();
      this.editingSent.clear();
      const resources = [...this.wanted.values()];
      for (const [key, ref] of this.wanted) this.subscribed.set(key, ref);
      this.handlers.state(this.attempt === 0 ? "connecting" : "reconnecting", "");
      let failure = "the stream ended";
      try {
        const events = this.api.watch.openWatch(
          {
            subscribe: { resources, resumeAfter: this.cursor, routedInteractions: true },
            heartbeatInterval: { seconds: BigInt(HEARTBEAT_SECONDS) },
          },
          { signal: controller.signal, timeoutMs: 0 },
        );
        this.arm(controller);
        for await (const event of events) {
          this.arm(controller);
          this.receive(event);
        }
      } catch (error) {
        failure = controller.signal.aborted ? "no heartbeat" : connectError(error).rawMessage;
      } finally {
        clearTimeout(this.watchdog);
        this.watchId = "";
      }
      if (this.stopped) return;
      this.attempt += 1;
      const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(this.attempt - 1, 10));
      const delay = backoff / 2 + Math.random() * (backoff / 2);
      this.handlers.state("reconnecting", `${failure}; retrying in ${Math.ceil(delay / 1000)} s`);
      await sleep(delay);
    }
  }

  /** (Re)starts the silence timer of the open stream. */
  private arm(controller: AbortController): void {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => controller.abort(), HEARTBEAT_SECONDS * SILENCE_INTERVALS * 1000);
  }

  private receive(event: WatchEvent): void {
    if (event.cursor > 0n) this.cursor = event.cursor;
    switch (event.event.case) {
      case "watchOpened":
        this.watchId = event.event.value.watchId;
        this.attempt = 0;
        this.handlers.state("live", "");
        this.flush();
        break;
      case "heartbeat":
        break;
      case "resourceChanged":
        this.handlers.changed(event.event.value);
        break;
      case "presenceChanged":
        this.handlers.presence(event.event.value);
        break;
      case "interactionRouted":
        this.handlers.routed(event.event.value);
        break;
      case "resync":
        this.handlers.resync(event.event.value.reason);
        break;
      default:
        break;
    }
  }

  /** What the stream lacks: subscriptions, editing marks, then unsubscriptions. */
  private pending(): WatchRequest[] {
    const requests: WatchRequest[] = [];
    const subscribe = [...this.wanted.entries()].filter(([key]) => !this.subscribed.has(key));
    if (subscribe.length > 0) {
      const value = create(SubscribeSchema, { resources: subscribe.map(([, ref]) => ref), routedInteractions: true });
      requests.push(create(WatchRequestSchema, { request: { case: "subscribe", value } }));
    }
    for (const [key, ref] of this.wanted) {
      const editing = this.editing.has(key);
      if (editing !== this.editingSent.has(key)) {
        const value = create(SetEditingSchema, { resource: ref, editing });
        requests.push(create(WatchRequestSchema, { request: { case: "setEditing", value } }));
      }
    }
    const unsubscribe = [...this.subscribed.entries()].filter(([key]) => !this.wanted.has(key));
    if (unsubscribe.length > 0) {
      const value = create(UnsubscribeSchema, { resources: unsubscribe.map(([, ref]) => ref) });
      requests.push(create(WatchRequestSchema, { request: { case: "unsubscribe", value } }));
    }
    return requests;
  }

  /** Sends what the stream lacks, one UpdateWatch at a time. */
  private flush(): void {
    if (this.flushing || !this.watchId) return;
    const requests = this.pending();
    if (requests.length === 0) return;
    this.flushing = true;
    const watchId = this.watchId;
    this.sequence += 1n;
    const sequence = this.sequence;
    // What the stream will have once this call is applied.
    const subscribed = new Map(this.wanted);
    const editing = new Set(this.editing);
    void this.api.watch
      .updateWatch({ watchId, sequence, requests })
      .then(
        () => {
          if (watchId !== this.watchId) return;
          this.subscribed.clear();
          for (const [key, ref] of subscribed) this.subscribed.set(key, ref);
          this.editingSent.clear();
          for (const key of editing) this.editingSent.add(key);
        },
        (error: unknown) => {
          // A stream that is gone already: the next one is opened with everything the page wants.
          if (watchId !== this.watchId) return;
          const err = connectError(error);
          const reason = errorInfo(err)?.reason;
          const gone = err.code === Code.NotFound && (reason === undefined || reason === "WATCH_NOT_FOUND");
          // Unavailable: the server is shutting down or out of reach, and the stream with it.
          if (gone || err.code === Code.Unavailable) {
            this.reconnect();
            return;
          }
          // Refused for good (too many records, a record that is gone): the stream keeps what it had; the page
          // is told, and the same requests are not sent again.
          this.subscribed.clear();
          for (const [key, ref] of subscribed) this.subscribed.set(key, ref);
          this.editingSent.clear();
          for (const key of editing) this.editingSent.add(key);
          this.handlers.state("live", `live updates refused: ${err.rawMessage}`);
        },
      )
      .finally(() => {
        this.flushing = false;
        if (watchId === this.watchId) this.flush();
      });
  }
}
