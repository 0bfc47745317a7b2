// Small DOM helpers: elements from a tag, properties and children; no framework.

export type Child = Node | string | number | null | undefined | false;
type Handler = (event: Event) => void;
export type Props = Record<string, string | number | boolean | Handler | null | undefined>;

/**
 * An element. Props: `class`, `testid` (data-testid), `on<event>` handlers, boolean attributes (`hidden`,
 * `disabled`, `checked`, `readonly`, `required`), `value`, and any other attribute.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") {
      element.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "testid") {
      element.dataset.testid = String(value);
    } else if (key === "value") {
      (element as unknown as { value: string }).value = String(value);
    } else if (key === "checked") {
      (element as unknown as { checked: boolean }).checked = Boolean(value);
    } else if (value === true) {
      element.setAttribute(key, "");
    } else {
      element.setAttribute(key, String(value));
    }
  }
  append(element, children);
  return element;
}

/** Appends children (nested arrays flattened, empty values skipped). */
export function append(parent: Node, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces every child of `parent`. */
export function replace(parent: Node, ...children: (Child | Child[])[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, children);
}

/** Fills `list` with an item per entry of `entries`, or with a hint saying `empty` when there are none. */
export function fillList<T>(list: Node, entries: T[], empty: string, item: (entry: T) => Child): void {
  replace(list, entries.length === 0 ? h("li", { class: "hint" }, empty) : entries.map(item));
}

/** A list loaded a page at a time: the first page replaces what it held, a later one is appended; `more` shows while there is a next page. */
export class Pages<T> {
  entries: T[] = [];
  next = "";

  constructor(private readonly more: HTMLElement) {}

  /** Takes in `page`, fetched for `token` ("" for the first page), and the token of the page after it. */
  take(token: string, page: T[], next: string): void {
    this.entries = token ? [...this.entries, ...page] : page;
    this.next = next;
    this.more.hidden = !this.next;
  }
}

/** The element with this id (the page's static skeleton has them all). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
}

/** Characters as agents count them (Unicode code points), not UTF-16 units or bytes. */
export function charCount(text: string): number {
  return [...text].length;
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A handler that runs `fn` once the calls to it paused for `ms`. */
export function debounce<A extends unknown[]>(ms: number, fn: (...args: A) => void): (...args: A) => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return (...args: A) => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
