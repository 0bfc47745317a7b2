// Duplicates: customers likely to be this one (FindMatchingCustomers) with why they matched, and merging the
// chosen ones into this customer (MergeCustomers; admins only, others are told so).

import { Code, connectError, describe, staleSave } from "./api.js";
import type { App } from "./app.js";
import { summary } from "./app.js";
import { fillList, h, replace } from "./dom.js";
import { customerName, labeller } from "./format.js";
import { type Customer, type CustomerMatch, MatchReasonKind } from "./gen/customer_context/v1/customer_pb.js";

const REASONS: [MatchReasonKind, string][] = [
  [MatchReasonKind.SHARED_PHONE, "same phone"],
  [MatchReasonKind.SHARED_EMAIL, "same email"],
  [MatchReasonKind.SHARED_HANDLE, "same handle"],
  [MatchReasonKind.SIMILAR_NAME, "similar name"],
];

const reasonLabel = labeller(REASONS, "match");

export class DuplicatesPanel {
  readonly element = h("div", { class: "duplicates", testid: "duplicates" });
  private readonly list = h("ul", { class: "items", testid: "duplicate-list" });
  private readonly mergeButton = h("button", { type: "button", class: "primary", testid: "merge-button", disabled: true }, "Merge into this customer");
  private readonly status = h("p", { class: "field-error", testid: "merge-message", role: "alert", hidden: true });
  private readonly chosen = new Set<string>();

  constructor(
    private readonly app: App,
    private customer: Customer,
  ) {
    this.mergeButton.addEventListener("click", () => void this.merge());
    replace(
      this.element,
      h("p", { class: "hint" }, "Customers sharing a phone, email or handle, or with a similar name. Merging moves their requests, activities and contact details here."),
      this.list,
      h("div", { class: "actions" }, this.mergeButton),
      this.status,
    );
  }

  async load(): Promise<void> {
    this.chosen.clear();
    this.updateButton();
    replace(this.list, h("li", { class: "hint" }, "Looking for duplicates…"));
    try {
      const response = await this.app.api.customers.findMatchingCustomers({ customerId: this.customer.id });
      this.render(response.matches);
    } catch (error) {
      replace(this.list, h("li", { class: "hint" }, describe(error)));
    }
  }

  private render(matches: CustomerMatch[]): void {
    fillList(this.list, matches, "No likely duplicates.", (match) => {
      const other = match.customer!;
      const box = h("input", { type: "checkbox", testid: "duplicate-choose", "aria-label": `Merge ${customerName(other)}` });
      box.addEventListener("change", () => {
        if (box.checked) this.chosen.add(other.id);
        else this.chosen.delete(other.id);
        this.updateButton();
      });
      return h(
        "li",
        { class: "item", testid: "duplicate", "data-id": other.id },
        h("label", { class: "item-main" }, box,
          h("span", { class: "name" }, customerName(other)),
          h("span", { class: "badge" }, `${Math.round(match.score * 100)}%`),
          h("span", { class: "sub" }, [summary(other), ...match.reasons.map((r) => `${reasonLabel(r.kind)}${r.detail ? ` (${r.detail})` : ""}`)].filter(Boolean).join(" · "))),
      );
    });
  }

  private updateButton(): void {
    this.mergeButton.disabled = this.chosen.size === 0;
    this.status.hidden = true;
  }

  private async merge(): Promise<void> {
    const sources = [...this.chosen];
    if (sources.length === 0) return;
    if (!window.confirm(`Merge ${sources.length} customer(s) into ${customerName(this.customer)}? They will no longer appear on their own.`)) return;
    try {
      const merged = await this.app.api.customers.mergeCustomers({ targetId: this.customer.id, targetVersion: this.customer.version, sourceIds: sources });
      this.customer = merged;
      await this.app.reloadScreen(false);
      this.app.message(`Merged ${sources.length} customer(s).`, "info");
      await this.load();
    } catch (error) {
      const err = connectError(error);
      const stale = staleSave(error);
      if (stale) {
        this.app.staleBanner("This customer", stale.updatedBy);
        return;
      }
      this.status.textContent = err.code === Code.PermissionDenied ? `Only administrators can merge customers (${err.rawMessage}).` : describe(error);
      this.status.hidden = false;
    }
  }
}
