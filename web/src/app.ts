// The page: search and Recent, the customer on screen with its panels, the live banner and presence chips, and
// the screen-pop of routed interactions.

import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Api, Code, connectError, describe, errorInfo } from "./api.js";
import { byId, type Child, debounce, h, replace } from "./dom.js";
import { DuplicatesPanel } from "./duplicates.js";
import { channelLabel, customerName, directionLabel } from "./format.js";
import { ChangeKind, type ResourceRef, ResourceRefSchema, ResourceType } from "./gen/customer_context/v1/common_pb.js";
import type { Prefill } from "./gen/customer_context/v1/context_pb.js";
import { ContactKind, type Customer } from "./gen/customer_context/v1/customer_pb.js";
import type { InteractionRouted, PresenceChanged, ResourceChanged } from "./gen/customer_context/v1/watch_pb.js";
import { JourneyPanel } from "./journey.js";
import { Live, type LiveState } from "./live.js";
import { ProfileForm } from "./profile.js";
import { RequestsPanel } from "./requests.js";

const SEARCH_PAGE = 20;
const RECENT_PAGE = 15;
const TABS = ["profile", "requests", "journey", "duplicates"] as const;
type Tab = (typeof TABS)[number];

/** The customer on screen and its panels. */
interface Open {
  customer: Customer;
  profile: ProfileForm;
  requests: RequestsPanel;
  journey: JourneyPanel;
  duplicates: DuplicatesPanel;
}

export class App {
  readonly live: Live;
  private open: Open | null = null;
  private newForm: ProfileForm | null = null;
  private bannerAction: (() => void) | null = null;
  private searchSerial = 0;
  private messageTimer: ReturnType<typeof setTimeout> | undefined;

  private readonly searchInput = byId<HTMLInputElement>("search-input");
  private readonly results = byId<HTMLUListElement>("search-results");
  private readonly recent = byId<HTMLUListElement>("recent-list");
  private readonly banner = byId("banner");
  private readonly bannerText = byId("banner-text");
  private readonly presence = byId("presence");
  private readonly screenPop = byId("screen-pop");
  private readonly customerView = byId("customer");
  private readonly newCustomerView = byId("new-customer-view");
  private readonly empty = byId("empty");
  private readonly messageBox = byId("message");
  private readonly liveStatus = byId("live-status");

  constructor(
    readonly api: Api,
    readonly agent: string,
  ) {
    this.live = new Live(api, {
      changed: (event) => this.onChanged(event),
      presence: (event) => this.onPresence(event),
      routed: (event) => void this.onRouted(event),
      resync: () => void this.reloadScreen(false),
      state: (state, detail) => this.onLiveState(state, detail),
    });
  }

  start(): void {
    this.searchInput.addEventListener("input", debounce(150, () => void this.search()));
    this.searchInput.addEventListener("keydown", (event) => this.onSearchKey(event));
    byId("new-customer").addEventListener("click", () => this.newCustomer({}));
    byId("banner-load").addEventListener("click", () => this.bannerAction?.());
    byId("banner-dismiss").addEventListener("click", () => this.hideBanner());
    byId("close-customer").addEventListener("click", () => this.closeCustomer());
    for (const tab of document.querySelectorAll<HTMLButtonElement>("[data-tab]")) {
      tab.addEventListener("click", () => this.showTab(tab.dataset.tab as Tab));
    }
    document.addEventListener("keydown", (event) => this.onKey(event));
    window.addEventListener("beforeunload", (event) => {
      if (this.dirty()) event.preventDefault();
    });
    this.live.start();
    void this.search();
    void this.loadRecent();
  }

  // ---- shared with the panels ----

  /** A message above the workspace: errors stay until the next action, notices fade. */
  message(text: string, kind: "error" | "info" = "error"): void {
    clearTimeout(this.messageTimer);
    this.messageBox.textContent = text;
    this.messageBox.dataset.kind = kind;
    this.messageBox.hidden = false;
    this.messageTimer = setTimeout(() => (this.messageBox.hidden = true), kind === "info" ? 3000 : 10000);
  }

  /** The banner for a record on screen that someone else changed: "Changed by Ben — Load". */
  staleBanner(what: string, by: string, detail = ""): void {
    this.showBanner(`Changed by ${by || "another agent"}${detail ? ` · ${what}: ${detail}` : ` · ${what}`}`, "Load", () =>
      void this.reloadScreen(true),
    );
  }

  /** Marks the agent as editing the customer (a dirty form) or not. */
  editing(customer: Customer, editing: boolean): void {
    this.live.setEditing(this.refOf(customer), editing);
  }

  customerSaved(customer: Customer): void {
    if (this.open?.customer.id !== customer.id) return;
    this.open.customer = customer;
    byId("customer-title").textContent = customerName(customer);
    this.live.seen(this.refOf(customer));
    this.hideBanner();
    void this.loadRecent();
  }

  /** Whether any form on screen holds unsaved changes. */
  dirty(): boolean {
    if (this.newForm?.dirty()) return true;
    const open = this.open;
    return !!open && (open.profile.dirty() || open.requests.dirty() || open.journey.dirty());
  }

  /** Asks before throwing away unsaved changes; true when there are none or the agent agrees. */
  confirmLeave(): boolean {
    return !this.dirty() || window.confirm("You have unsaved changes. Discard them?");
  }

  // ---- opening and closing customers ----

  async openCustomer(id: string, ask = true): Promise<boolean> {
    if (ask && !this.confirmLeave()) return false;
    let customer: Customer;
    try {
      customer = await this.api.customers.getCustomer({ id });
    } catch (error) {
      const merged = errorInfo(error);
      if (merged?.reason === "CUSTOMER_MERGED" && merged.metadata["merged_into"]) {
        this.message("That customer was merged; showing the customer it was merged into.", "info");
        return this.openCustomer(merged.metadata["merged_into"], false);
      }
      this.message(describe(error));
      return false;
    }
    this.show(customer);
    void this.loadRecent();
    return true;
  }

  private show(customer: Customer): void {
    this.leave();
    const open: Open = {
      customer,
      profile: new ProfileForm(this, { kind: "existing", customer }),
      requests: new RequestsPanel(this, customer),
      journey: new JourneyPanel(this, customer),
      duplicates: new DuplicatesPanel(this, customer),
    };
    this.open = open;
    replace(byId("panel-profile"), open.profile.element);
    replace(byId("panel-requests"), open.requests.element);
    replace(byId("panel-journey"), open.journey.element);
    replace(byId("panel-duplicates"), open.duplicates.element);
    byId("customer-title").textContent = customerName(customer);
    this.customerView.dataset.customerId = customer.id;
    replace(this.presence);
    this.empty.hidden = true;
    this.newCustomerView.hidden = true;
    this.customerView.hidden = false;
    this.showTab("profile");
    this.live.watch(this.refOf(customer));
    void open.requests.load();
    void open.journey.load();
  }

  /** Takes the customer (or new-customer form) off screen without asking. */
  private leave(): void {
    if (this.open) {
      this.live.unwatch(this.refOf(this.open.customer));
      this.open = null;
    }
    this.newForm = null;
    replace(this.newCustomerView);
    this.hideBanner();
    replace(this.presence);
    this.customerView.hidden = true;
    this.newCustomerView.hidden = true;
    delete this.customerView.dataset.customerId;
  }

  closeCustomer(): void {
    if (!this.confirmLeave()) return;
    this.leave();
    this.empty.hidden = false;
  }

  /** The new-customer form, prefilled; `activity` (a routed interaction's) is linked to the customer created. */
  newCustomer(prefill: Prefill | Record<string, never>, activity?: ResourceRef): void {
    if (!this.confirmLeave()) return;
    this.leave();
    const p = prefill as Partial<Prefill>;
    const contactPoints = [
      ...(p.phone ? [{ kind: ContactKind.PHONE, label: "", value: p.phone }] : []),
      ...(p.email ? [{ kind: ContactKind.EMAIL, label: "", value: p.email }] : []),
    ];
    const form = new ProfileForm(this, {
      kind: "new",
      prefill: { first_name: p.firstName ?? "", last_name: p.lastName ?? "", contact_points: contactPoints },
      onCreated: (customer) => {
        this.newForm = null;
        this.message(`Created ${customerName(customer)}.`, "info");
        if (activity) void this.linkActivity(activity, customer.id);
        this.show(customer);
        void this.loadRecent();
      },
      onCancel: () => {
        this.leave();
        this.empty.hidden = false;
      },
    });
    this.newForm = form;
    replace(this.newCustomerView, h("h1", {}, "New customer"), form.element);
    this.empty.hidden = true;
    this.newCustomerView.hidden = false;
    form.element.querySelector<HTMLInputElement>("input")?.focus();
  }

  /** Links a routed interaction's activity, logged before the caller was known, to `customerId`. */
  private async linkActivity(ref: ResourceRef, customerId: string): Promise<void> {
    try {
      const activity = await this.api.activities.getActivity({ id: ref.id });
      if (activity.customerId) return;
      await this.api.activities.updateActivity({
        activity: { id: activity.id, version: activity.version, customerId },
        updateMask: { paths: ["customer_id"] },
      });
      if (this.open?.customer.id === customerId) void this.open.journey.load();
    } catch (error) {
      this.message(`The interaction could not be linked to the customer: ${describe(error)}`);
    }
  }

  /** Reloads what is on screen; `ask`: confirm first when a form holds changes (else keep the form). */
  async reloadScreen(ask: boolean): Promise<void> {
    const open = this.open;
    if (!open) return;
    const keepProfile = open.profile.dirty() && !(ask && window.confirm("Load the saved version? Your unsaved changes will be lost."));
    try {
      const customer = await this.api.customers.getCustomer({ id: open.customer.id });
      if (this.open !== open) return;
      if (!keepProfile) {
        open.customer = customer;
        open.profile.load(customer);
        byId("customer-title").textContent = customerName(customer);
        this.live.seen(this.refOf(customer));
      }
      void open.requests.load();
      void open.journey.load();
      if (!keepProfile) this.hideBanner();
    } catch (error) {
      const err = connectError(error);
      if (err.code === Code.NotFound) {
        const merged = errorInfo(err);
        if (merged?.reason === "CUSTOMER_MERGED" && merged.metadata["merged_into"]) {
          await this.openCustomer(merged.metadata["merged_into"], false);
          return;
        }
        this.leave();
        this.empty.hidden = false;
        this.message("This customer no longer exists.");
        return;
      }
      this.message(describe(error));
    }
  }

  private showTab(tab: Tab): void {
    for (const button of document.querySelectorAll<HTMLElement>("[data-tab]")) {
      const active = button.dataset.tab === tab;
      button.setAttribute("aria-selected", String(active));
      button.classList.toggle("active", active);
    }
    for (const panel of document.querySelectorAll<HTMLElement>("[data-panel]")) {
      panel.hidden = panel.dataset.panel !== tab;
    }
    if (tab === "duplicates") void this.open?.duplicates.load();
  }

  private refOf(customer: Customer): ResourceRef {
    return create(ResourceRefSchema, { type: ResourceType.CUSTOMER, id: customer.id, knownVersion: customer.version });
  }

  // ---- banner, presence, live events ----

  private showBanner(text: string, action: string, onAction: () => void): void {
    this.bannerText.textContent = text;
    byId("banner-load").textContent = action;
    this.bannerAction = onAction;
    this.banner.hidden = false;
  }

  private hideBanner(): void {
    this.banner.hidden = true;
    this.bannerAction = null;
  }

  private onChanged(event: ResourceChanged): void {
    const open = this.open;
    const resource = event.resource;
    if (!open || !resource) return;
    const onScreen = resource.id === open.customer.id || event.parent?.id === open.customer.id;
    if (!onScreen) return;
    const by = event.changedBy;
    if (resource.type === ResourceType.CUSTOMER && resource.id === open.customer.id) {
      if (event.kind === ChangeKind.MERGED && event.mergedInto) {
        const target = event.mergedInto.id;
        this.showBanner(`Merged into another customer by ${by}`, "Open", () => void this.openCustomer(target));
        return;
      }
      if (event.kind === ChangeKind.DELETED) {
        this.showBanner(`Deleted by ${by}`, "Close", () => {
          this.leave();
          this.empty.hidden = false;
        });
        return;
      }
      if (resource.knownVersion !== 0n && resource.knownVersion <= open.customer.version) return;
      this.staleBanner("profile", by, event.changedFields.join(", "));
      return;
    }
    const what = resource.type === ResourceType.REQUEST ? "a request" : "the journey";
    const kind = event.kind === ChangeKind.CREATED ? "added" : event.kind === ChangeKind.DELETED ? "removed" : "changed";
    this.staleBanner(what, by, kind);
  }

  private onPresence(event: PresenceChanged): void {
    const open = this.open;
    if (!open || event.resource?.id !== open.customer.id) return;
    const others = event.participants.filter((participant) => participant.agent !== this.agent);
    const unlisted = Math.max(0, event.totalParticipants - event.participants.length);
    replace(
      this.presence,
      others.map((participant) =>
        h(
          "span",
          {
            class: `chip presence-chip${participant.editing ? " editing" : ""}`,
            testid: "presence-chip",
            "data-agent": participant.agent,
            "data-editing": String(participant.editing),
          },
          `${participant.agent} ${participant.editing ? "editing" : "viewing"}`,
        ),
      ),
      unlisted > 0 ? h("span", { class: "chip", testid: "presence-more" }, `+${unlisted}`) : null,
    );
  }

  private onLiveState(state: LiveState, detail: string): void {
    this.liveStatus.dataset.state = state;
    this.liveStatus.textContent = state === "live" ? "Live" : state === "connecting" ? "Connecting…" : "Reconnecting…";
    this.liveStatus.title = detail;
    if (detail && state === "live") this.message(detail);
  }

  // ---- screen-pop ----

  private async onRouted(event: InteractionRouted): Promise<void> {
    const routed = event.routeTime ? timestampDate(event.routeTime).toLocaleTimeString() : "";
    const heading = h(
      "div",
      { class: "pop-head" },
      h("strong", {}, `${directionLabel(event.direction)} ${channelLabel(event.channel)}`.trim()),
      routed ? ` · routed ${routed}` : "",
      h("button", { type: "button", class: "link", testid: "screen-pop-close", onclick: () => this.hidePop() }, "Dismiss"),
    );
    this.screenPop.dataset.interactionId = event.interactionId;
    const newCustomer = () => {
      this.newCustomer(event.prefill ?? {}, event.activity);
      this.hidePop();
    };
    if (event.customer) {
      const id = event.customer.id;
      if (this.dirty()) {
        // Never throw away an agent's typing: offer the customer instead of opening it.
        this.showPop(
          heading,
          h("p", {}, "A known customer is on the line."),
          h("button", { type: "button", class: "primary", testid: "screen-pop-open", onclick: () => {
            void this.openCustomer(id).then((opened) => opened && this.hidePop());
          } }, "Open customer"),
        );
        return;
      }
      this.showPop(heading, h("p", {}, "Opened the caller's profile."));
      await this.openCustomer(id, false);
      return;
    }
    if (event.candidates.length > 0) {
      const found = await Promise.all(
        event.candidates.map((ref) => this.api.customers.getCustomer({ id: ref.id }).catch(() => null)),
      );
      const choices = found.filter((customer): customer is Customer => customer !== null);
      this.showPop(
        heading,
        h("p", {}, `${choices.length} customers match the caller. Who is it?`),
        h(
          "ul",
          { class: "results", testid: "candidates" },
          choices.map((customer) =>
            h("li", {}, h("button", { type: "button", class: "result", testid: "candidate", "data-id": customer.id, onclick: () => {
              void this.openCustomer(customer.id).then((opened) => {
                if (!opened) return;
                if (event.activity) void this.linkActivity(event.activity, customer.id);
                this.hidePop();
              });
            } }, h("span", { class: "name" }, customerName(customer)), h("span", { class: "sub" }, summary(customer)))),
          ),
        ),
        h("button", { type: "button", class: "link", testid: "candidate-new", onclick: newCustomer }, "None of them: new customer"),
      );
      return;
    }
    this.showPop(heading, h("p", {}, "Unknown caller: a new-customer form is open."));
    if (this.dirty()) {
      this.showPop(
        heading,
        h("p", {}, "Unknown caller."),
        h("button", { type: "button", class: "primary", testid: "screen-pop-new", onclick: newCustomer }, "New customer form"),
      );
      return;
    }
    this.newCustomer(event.prefill ?? {}, event.activity);
  }

  /** Shows the screen-pop with these children. */
  private showPop(...children: Child[]): void {
    replace(this.screenPop, ...children);
    this.screenPop.hidden = false;
  }

  private hidePop(): void {
    this.screenPop.hidden = true;
  }

  // ---- search and Recent ----

  private async search(): Promise<void> {
    const serial = ++this.searchSerial;
    const query = this.searchInput.value.trim();
    try {
      const response = await this.api.customers.searchCustomers({ query, pageSize: SEARCH_PAGE });
      if (serial !== this.searchSerial) return;
      this.renderList(this.results, response.customers, "search-result", query ? "No customer matches." : "No customers yet.");
      const first = this.results.querySelector<HTMLElement>("[role=option]");
      if (first && query) this.select(first);
    } catch (error) {
      if (serial === this.searchSerial) this.message(describe(error));
    }
  }

  async loadRecent(): Promise<void> {
    try {
      const response = await this.api.context.listRecentCustomers({ agent: this.agent, pageSize: RECENT_PAGE });
      this.renderList(this.recent, response.customers, "recent-customer", "Customers you open appear here.");
    } catch (error) {
      const err = connectError(error);
      if (err.code !== Code.PermissionDenied) this.message(describe(error));
    }
  }

  private renderList(list: HTMLElement, customers: Customer[], testid: string, none: string): void {
    replace(
      list,
      customers.length === 0
        ? h("li", { class: "hint" }, none)
        : customers.map((customer) =>
            h(
              "li",
              {
                role: "option",
                class: "result",
                testid,
                "data-id": customer.id,
                "aria-selected": "false",
                tabindex: -1,
                onclick: () => void this.openCustomer(customer.id),
              },
              h("span", { class: "name" }, customerName(customer)),
              customer.creditHold ? h("span", { class: "badge warn" }, "Credit hold") : null,
              h("span", { class: "sub" }, summary(customer)),
            ),
          ),
    );
  }

  private select(option: HTMLElement): void {
    for (const other of this.results.querySelectorAll("[aria-selected=true]")) other.setAttribute("aria-selected", "false");
    option.setAttribute("aria-selected", "true");
    option.scrollIntoView({ block: "nearest" });
  }

  private onSearchKey(event: KeyboardEvent): void {
    const options = [...this.results.querySelectorAll<HTMLElement>("[role=option]")];
    const current = options.findIndex((option) => option.getAttribute("aria-selected") === "true");
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (options.length === 0) return;
      const next = event.key === "ArrowDown" ? Math.min(options.length - 1, current + 1) : Math.max(0, current - 1);
      this.select(options[next]!);
    } else if (event.key === "Enter") {
      event.preventDefault();
      const chosen = options[current] ?? options[0];
      if (chosen?.dataset.id) void this.openCustomer(chosen.dataset.id);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      if (this.searchInput.value) {
        this.searchInput.value = "";
        void this.search();
      } else {
        this.searchInput.blur();
      }
    }
  }

  private onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement | null;
    const typing = !!target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      this.searchInput.focus();
      this.searchInput.select();
      return;
    }
    if (event.key !== "Escape" || event.defaultPrevented) return;
    if (!this.screenPop.hidden) {
      this.hidePop();
    } else if (this.newForm) {
      this.newForm.cancel();
    } else if (this.open) {
      if (this.open.requests.closeDetail()) return;
      this.closeCustomer();
    }
  }
}

/** A customer's second line in lists: company, first phone, first email. */
export function summary(customer: Customer): string {
  const phone = customer.contactPoints.find((point) => point.kind === ContactKind.PHONE)?.value;
  const email = customer.contactPoints.find((point) => point.kind === ContactKind.EMAIL)?.value;
  return [customer.company, customer.customerNumber && `#${customer.customerNumber}`, phone, email].filter(Boolean).join(" · ");
}
