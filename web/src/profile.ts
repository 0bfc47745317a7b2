// The customer profile: one form that shows the record, edits it in place and creates new customers.
//
// Saving sends only the fields that changed (update_mask) with the version on screen. A save refused because
// someone else saved first shows the "Changed by … — Load" banner; field violations are shown next to their inputs.

import { create } from "@bufbuild/protobuf";
import { Code, connectError, describe, fieldErrors, staleSave } from "./api.js";
import type { App } from "./app.js";
import { charCount, h, replace } from "./dom.js";
import { clearErrors, errorSlot, form, showErrors, textField } from "./fields.js";
import { CONTACT_KINDS, customerName, when } from "./format.js";
import { ContactKind, type Customer, CustomerSchema } from "./gen/customer_context/v1/customer_pb.js";

/** Tag limits, as the service checks them. */
const MAX_TAG_CHARS = 50;
const MAX_TAGS = 100;

interface Draft {
  first_name: string;
  last_name: string;
  company: string;
  customer_number: string;
  gender: string;
  notes: string;
  credit_hold: boolean;
  contact_points: { kind: ContactKind; label: string; value: string }[];
  tags: string[];
  attributes: [string, string][];
}

type FieldName = keyof Draft;
const FIELDS: FieldName[] = [
  "first_name",
  "last_name",
  "company",
  "customer_number",
  "gender",
  "notes",
  "credit_hold",
  "contact_points",
  "tags",
  "attributes",
];

function draftOf(customer: Customer): Draft {
  return {
    first_name: customer.firstName,
    last_name: customer.lastName,
    company: customer.company,
    customer_number: customer.customerNumber,
    gender: customer.gender,
    notes: customer.notes,
    credit_hold: customer.creditHold,
    contact_points: customer.contactPoints.map((point) => ({ kind: point.kind, label: point.label, value: point.value })),
    tags: [...customer.tags],
    attributes: Object.entries(customer.attributes).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  };
}

function customerOf(draft: Draft): Customer {
  return create(CustomerSchema, {
    firstName: draft.first_name.trim(),
    lastName: draft.last_name.trim(),
    company: draft.company.trim(),
    customerNumber: draft.customer_number.trim(),
    gender: draft.gender.trim(),
    notes: draft.notes,
    creditHold: draft.credit_hold,
    contactPoints: draft.contact_points.map((point) => ({ kind: point.kind, label: point.label.trim(), value: point.value.trim() })),
    tags: [...draft.tags],
    attributes: Object.fromEntries(
      draft.attributes.filter(([key, value]) => key.trim() !== "" || value !== "").map(([key, value]) => [key.trim(), value]),
    ),
  });
}

export type ProfileMode =
  | { kind: "existing"; customer: Customer }
  | { kind: "new"; prefill: Partial<Draft>; onCreated: (customer: Customer) => void; onCancel: () => void };

export class ProfileForm {
  readonly element: HTMLFormElement;
  private original: Draft;
  private draft: Draft;
  private customer: Customer | null;
  private saving = false;
  private readonly contacts = h("div", { class: "rows", testid: "contact-points" });
  private readonly tagChips = h("div", { class: "chips", testid: "tags" });
  private readonly attributeRows = h("div", { class: "rows", testid: "attributes" });
  private readonly saveButton: HTMLButtonElement;
  private readonly cancelButton: HTMLButtonElement;
  private readonly meta = h("p", { class: "meta", testid: "profile-meta" });

  constructor(
    private readonly app: App,
    private readonly mode: ProfileMode,
  ) {
    this.customer = mode.kind === "existing" ? mode.customer : null;
    const empty = draftOf(create(CustomerSchema));
    this.original = mode.kind === "existing" ? draftOf(mode.customer) : empty;
    this.draft = mode.kind === "existing" ? draftOf(mode.customer) : { ...empty, ...structuredClone(mode.prefill) };
    const isNew = mode.kind === "new";
    this.saveButton = h(
      "button",
      { type: "submit", class: "primary", testid: isNew ? "create-customer" : "save-customer" },
      isNew ? "Create customer" : "Save",
    );
    this.cancelButton = h(
      "button",
      { type: "button", testid: isNew ? "cancel-new-customer" : "cancel-customer", onclick: () => this.cancel() },
      "Cancel",
    );
    this.element = form({ class: "profile", testid: isNew ? "new-customer-form" : "profile-form" }, () => void this.save());
    this.render();
  }

  /** Whether the form holds changes not saved yet (a new-customer form always does once touched). */
  dirty(): boolean {
    return this.changedFields().length > 0;
  }

  /** Replaces what is on screen with `customer` (after a Load or a save). */
  load(customer: Customer): void {
    this.customer = customer;
    this.original = draftOf(customer);
    this.draft = draftOf(customer);
    this.render();
    this.changed();
  }

  private changedFields(): FieldName[] {
    return FIELDS.filter((field) => JSON.stringify(this.draft[field]) !== JSON.stringify(this.original[field]));
  }

  /** After every edit: buttons, and the editing mark the other agents see. */
  private changed(): void {
    const dirty = this.dirty();
    this.saveButton.disabled = this.saving || (this.mode.kind === "existing" && !dirty);
    this.cancelButton.hidden = this.mode.kind === "existing" && !dirty;
    this.element.classList.toggle("dirty", dirty);
    if (this.customer) this.app.editing(this.customer, dirty);
  }

  private render(): void {
    const d = this.draft;
    const bind = (field: "first_name" | "last_name" | "company" | "customer_number" | "gender", label: string) => {
      const { wrapper, input } = textField(label, `customer.${field}`, d[field]);
      input.addEventListener("input", () => {
        this.draft[field] = input.value;
        this.changed();
      });
      return wrapper;
    };
    const notes = h("textarea", { name: "customer.notes", "data-field": "customer.notes", testid: "field-customer.notes", rows: 3 });
    notes.value = d.notes;
    notes.addEventListener("input", () => {
      this.draft.notes = notes.value;
      this.changed();
    });
    const creditHold = h("input", { type: "checkbox", testid: "field-customer.credit_hold", "data-field": "customer.credit_hold", checked: d.credit_hold });
    creditHold.addEventListener("change", () => {
      this.draft.credit_hold = creditHold.checked;
      this.changed();
    });
    const tagInput = h("input", {
      class: "tag-input",
      testid: "tag-input",
      placeholder: "Add a tag and press Enter",
      "aria-label": "Add a tag",
      maxlength: 200,
    });
    tagInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === ",") {
        event.preventDefault();
        if (this.addTag(tagInput.value)) tagInput.value = "";
      } else if (event.key === "Backspace" && tagInput.value === "" && this.draft.tags.length > 0) {
        this.draft.tags.pop();
        this.renderTags();
        this.changed();
      }
    });
    this.renderContacts();
    this.renderTags();
    this.renderAttributes();
    this.renderMeta();
    const locked = this.customer?.locked
      ? h("p", { class: "notice", testid: "locked" }, "This customer is locked: the profile cannot be changed.")
      : null;
    replace(
      this.element,
      locked,
      errorSlot("customer"),
      h(
        "div",
        { class: "grid" },
        bind("first_name", "First name"),
        bind("last_name", "Last name"),
        bind("company", "Company"),
        bind("customer_number", "Customer number"),
        bind("gender", "Gender"),
        h(
          "label",
          { class: "field checkbox" },
          creditHold,
          h("span", {}, "Credit hold"),
          errorSlot("customer.credit_hold"),
        ),
      ),
      h("fieldset", {}, h("legend", {}, "Contact points"), this.contacts, errorSlot("customer.contact_points"),
        h("button", { type: "button", class: "link", testid: "add-contact", onclick: () => this.addContact() }, "+ Add contact point")),
      h("fieldset", {}, h("legend", {}, "Tags"), h("div", { class: "tag-box" }, this.tagChips, tagInput), errorSlot("customer.tags")),
      h("fieldset", {}, h("legend", {}, "Attributes"), this.attributeRows, errorSlot("customer.attributes"),
        h("button", { type: "button", class: "link", testid: "add-attribute", onclick: () => this.addAttribute() }, "+ Add attribute")),
      h("label", { class: "field" }, h("span", { class: "label" }, "Notes"), notes, errorSlot("customer.notes")),
      h("div", { class: "actions" }, this.saveButton, this.cancelButton, this.meta),
    );
    this.changed();
  }

  private renderMeta(): void {
    const c = this.customer;
    replace(
      this.meta,
      c ? `Version ${c.version} · updated ${when(c.updateTime)}${c.updatedBy ? ` by ${c.updatedBy}` : ""}` : "",
    );
  }

  private renderContacts(): void {
    const rows = this.draft.contact_points.map((point, index) => {
      const path = `customer.contact_points[${index}]`;
      const kind = h(
        "select",
        { "aria-label": "Kind", testid: "contact-kind", "data-field": `${path}.kind` },
        CONTACT_KINDS.map(([value, label]) => h("option", { value: String(value) }, label)),
      );
      kind.value = String(point.kind || ContactKind.PHONE);
      point.kind = Number(kind.value) as ContactKind;
      kind.addEventListener("change", () => {
        point.kind = Number(kind.value) as ContactKind;
        this.changed();
      });
      const label = h("input", { value: point.label, placeholder: "Label (mobile, work…)", "aria-label": "Label", testid: "contact-label", "data-field": `${path}.label` });
      label.addEventListener("input", () => {
        point.label = label.value;
        this.changed();
      });
      const value = h("input", { value: point.value, placeholder: "Number, address or handle", "aria-label": "Value", testid: "contact-value", "data-field": `${path}.value` });
      value.addEventListener("input", () => {
        point.value = value.value;
        this.changed();
      });
      const remove = h("button", { type: "button", class: "icon", "aria-label": "Remove contact point", testid: "remove-contact", onclick: () => {
        this.draft.contact_points.splice(index, 1);
        this.renderContacts();
        this.changed();
      } }, "×");
      return h("div", { class: "row contact", testid: "contact-point" }, kind, label, value, remove, errorSlot(path));
    });
    replace(this.contacts, rows.length ? rows : h("p", { class: "hint" }, "No contact points."));
  }

  private addContact(): void {
    this.draft.contact_points.push({ kind: ContactKind.PHONE, label: "", value: "" });
    this.renderContacts();
    this.changed();
    this.contacts.querySelector<HTMLInputElement>(".row:last-child [data-testid=contact-value]")?.focus();
  }

  private renderTags(): void {
    replace(
      this.tagChips,
      this.draft.tags.map((tag, index) =>
        h("span", { class: "chip", testid: "tag-chip" }, tag,
          h("button", { type: "button", class: "icon", "aria-label": `Remove tag ${tag}`, onclick: () => {
            this.draft.tags.splice(index, 1);
            this.renderTags();
            this.changed();
          } }, "×")),
      ),
    );
  }

  /** Adds a tag if it passes the service's rules (trimmed, 1–50 characters, unique ignoring case). */
  private addTag(text: string): boolean {
    const tag = text.trim();
    const slot = this.element.querySelector<HTMLElement>('[data-error-for="customer.tags"]');
    const refuse = (why: string): boolean => {
      if (slot) {
        slot.textContent = why;
        slot.hidden = false;
      }
      return false;
    };
    if (tag === "") return false;
    if (charCount(tag) > MAX_TAG_CHARS) return refuse(`A tag has at most ${MAX_TAG_CHARS} characters.`);
    if (this.draft.tags.some((other) => other.toLowerCase() === tag.toLowerCase())) return refuse(`"${tag}" is already a tag.`);
    if (this.draft.tags.length >= MAX_TAGS) return refuse(`A customer has at most ${MAX_TAGS} tags.`);
    if (slot) slot.hidden = true;
    this.draft.tags.push(tag);
    this.renderTags();
    this.changed();
    return true;
  }

  private renderAttributes(): void {
    const rows = this.draft.attributes.map((entry, index) => {
      const path = `customer.attributes["${entry[0]}"]`;
      const key = h("input", { value: entry[0], placeholder: "key", "aria-label": "Attribute key", testid: "attribute-key", "data-field": path });
      key.addEventListener("input", () => {
        entry[0] = key.value;
        this.changed();
      });
      const value = h("input", { value: entry[1], placeholder: "value", "aria-label": "Attribute value", testid: "attribute-value" });
      value.addEventListener("input", () => {
        entry[1] = value.value;
        this.changed();
      });
      const remove = h("button", { type: "button", class: "icon", "aria-label": "Remove attribute", onclick: () => {
        this.draft.attributes.splice(index, 1);
        this.renderAttributes();
        this.changed();
      } }, "×");
      return h("div", { class: "row attribute", testid: "attribute" }, key, value, remove, errorSlot(path));
    });
    replace(this.attributeRows, rows.length ? rows : h("p", { class: "hint" }, "No attributes."));
  }

  private addAttribute(): void {
    this.draft.attributes.push(["", ""]);
    this.renderAttributes();
    this.changed();
    this.attributeRows.querySelector<HTMLInputElement>(".row:last-child [data-testid=attribute-key]")?.focus();
  }

  /** Cancel: back to what was loaded (a new-customer form closes), after asking if there are changes. */
  cancel(): boolean {
    if (this.dirty() && !window.confirm("Discard your changes?")) return false;
    if (this.mode.kind === "new") {
      this.mode.onCancel();
      return true;
    }
    this.draft = structuredClone(this.original);
    this.render();
    clearErrors(this.element);
    return true;
  }

  private async save(): Promise<void> {
    if (this.saving) return;
    const fields = this.changedFields();
    if (this.mode.kind === "existing" && fields.length === 0) return;
    this.saving = true;
    this.saveButton.disabled = true;
    clearErrors(this.element);
    try {
      if (this.mode.kind === "new") {
        const created = await this.app.api.customers.createCustomer({ customer: customerOf(this.draft) });
        this.mode.onCreated(created);
        return;
      }
      const current = this.customer!;
      const customer = customerOf(this.draft);
      customer.id = current.id;
      customer.version = current.version;
      const updated = await this.app.api.customers.updateCustomer({
        customer,
        updateMask: { paths: fields },
      });
      this.app.editing(current, false);
      this.load(updated);
      this.app.customerSaved(updated);
      this.app.message(`Saved ${customerName(updated)}.`, "info");
    } catch (error) {
      const stale = staleSave(error);
      const violations = fieldErrors(error);
      if (stale && this.customer) {
        this.app.staleBanner("This customer", stale.updatedBy);
      } else if (violations.length > 0) {
        showErrors(this.element, "customer", violations);
      } else if (connectError(error).code === Code.AlreadyExists) {
        showErrors(this.element, "customer", [{ field: "customer.customer_number", description: connectError(error).rawMessage, reason: "ALREADY_EXISTS" }]);
      } else {
        this.app.message(describe(error));
      }
    } finally {
      this.saving = false;
      this.changed();
    }
  }
}
