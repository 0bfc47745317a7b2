// Form pieces shared by the forms: labelled inputs, error slots (`data-error-for="<field path>"`) and the rule that
// puts each server-side field violation next to its input.

import { describe, type FieldError, fieldErrors } from "./api.js";
import { charCount, type Child, h, type Props } from "./dom.js";

/** A form the browser leaves unvalidated; submitting it runs `submit` instead of loading a page. */
export function form(props: Props, submit: () => void, ...children: (Child | Child[])[]): HTMLFormElement {
  const onsubmit = (event: Event) => {
    event.preventDefault();
    submit();
  };
  return h("form", { ...props, novalidate: true, onsubmit }, ...children);
}

/** The actions row of a form with its primary submit button. */
export function submitRow(testid: string, label: string): HTMLElement {
  return h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", testid }, label));
}

/**
 * Submits `form` by running `send`: the form's errors cleared first; the field violations it fails with shown next
 * to their fields (`root` holding those of no field on the form), any other failure told through `tell`.
 */
export async function submitForm(form: HTMLElement, root: string, tell: (text: string) => void, send: () => Promise<void>): Promise<void> {
  clearErrors(form);
  try {
    await send();
  } catch (error) {
    const violations = fieldErrors(error);
    if (violations.length > 0) showErrors(form, root, violations);
    else tell(describe(error));
  }
}

/** The error slot of a field path. */
export function errorSlot(path: string): HTMLElement {
  return h("div", { class: "field-error", "data-error-for": path, role: "alert", hidden: true });
}

/** A labelled single-line input with its error slot. */
export function textField(label: string, path: string, value: string, props: Props = {}): {
  wrapper: HTMLElement;
  input: HTMLInputElement;
} {
  const input = h("input", { value, name: path, "data-field": path, testid: `field-${path}`, autocomplete: "off", ...props });
  const wrapper = h("label", { class: "field" }, h("span", { class: "label" }, label), input, errorSlot(path));
  return { wrapper, input };
}

/** A labelled text area with a live character counter (`max` characters, counted as agents count them). */
export function textArea(label: string, path: string, value: string, max: number, counterTestId: string): {
  wrapper: HTMLElement;
  input: HTMLTextAreaElement;
} {
  const input = h("textarea", { name: path, "data-field": path, testid: `field-${path}`, rows: 4 });
  input.value = value;
  const counter = h("span", { class: "counter", testid: counterTestId, "aria-live": "polite" });
  const update = (): void => {
    const count = charCount(input.value);
    counter.textContent = `${count.toLocaleString("en-US")} / ${max.toLocaleString("en-US")}`;
    counter.classList.toggle("over", count > max);
  };
  input.addEventListener("input", update);
  update();
  const wrapper = h(
    "label",
    { class: "field" },
    h("span", { class: "label" }, label, " ", counter),
    input,
    errorSlot(path),
  );
  return { wrapper, input };
}

/** Clears every error slot inside `form`. */
export function clearErrors(form: HTMLElement): void {
  for (const slot of form.querySelectorAll<HTMLElement>("[data-error-for]")) {
    slot.textContent = "";
    slot.hidden = true;
  }
  for (const input of form.querySelectorAll(".invalid")) input.classList.remove("invalid");
}

/**
 * Shows each violation in the slot of its path, or of the nearest enclosing path that has one
 * (`customer.tags[2]` → `customer.tags`), or in the form's own slot (`root`). Returns how many were shown.
 */
export function showErrors(form: HTMLElement, root: string, errors: FieldError[]): number {
  clearErrors(form);
  for (const error of errors) {
    const slot = slotFor(form, error.field) ?? slotFor(form, root);
    if (!slot) continue;
    const line = slot.textContent ? `${slot.textContent} ` : "";
    slot.textContent = `${line}${error.description}`;
    slot.hidden = false;
    const input = form.querySelector(`[data-field="${cssEscape(error.field)}"]`);
    input?.classList.add("invalid");
  }
  const first = form.querySelector<HTMLElement>(".invalid, [data-error-for]:not([hidden])");
  first?.scrollIntoView({ block: "nearest" });
  return errors.length;
}

function slotFor(form: HTMLElement, path: string): HTMLElement | null {
  let current = path;
  for (;;) {
    const slot = form.querySelector<HTMLElement>(`[data-error-for="${cssEscape(current)}"]`);
    if (slot) return slot;
    const cut = Math.max(current.lastIndexOf("."), current.lastIndexOf("["));
    if (cut <= 0) return null;
    current = current.slice(0, cut);
  }
}

function cssEscape(value: string): string {
  return value.replace(/["\\]/g, "\\$&");
}
