// A customer's requests: the list (status, opened and closed dates), a new-request form with a live character
// counter, status changes (close, reopen, pending, cancel) and the comment thread.

import { describe, staleSave } from "./api.js";
import type { App } from "./app.js";
import { fillList, h, Pages, replace } from "./dom.js";
import { errorSlot, form, submitForm, submitRow, textArea, textField } from "./fields.js";
import { day, REQUEST_STATUSES, statusLabel, when } from "./format.js";
import type { Customer } from "./gen/customer_context/v1/customer_pb.js";
import { type Request, RequestStatus } from "./gen/customer_context/v1/request_pb.js";

/** The longest text field, in characters. */
export const MAX_TEXT_CHARS = 2000;
const PAGE = 50;

export class RequestsPanel {
  readonly element = h("div", { class: "requests" });
  private readonly list = h("ul", { class: "items", testid: "request-list" });
  private readonly more = h("button", { type: "button", class: "link", testid: "requests-more", hidden: true }, "Show more");
  private readonly detail = h("div", { class: "detail", testid: "request-detail", hidden: true });
  private readonly form: HTMLFormElement;
  private readonly title: HTMLInputElement;
  private readonly description: HTMLTextAreaElement;
  private commentInput: HTMLTextAreaElement | null = null;
  private readonly pages = new Pages<Request>(this.more);
  private selected: string | null = null;

  constructor(
    private readonly app: App,
    private readonly customer: Customer,
  ) {
    const title = textField("Title", "request.title", "", { required: true, maxlength: 4000 });
    const description = textArea("Description", "request.description", "", MAX_TEXT_CHARS, "description-counter");
    this.title = title.input;
    this.description = description.input;
    this.form = form(
      { class: "new-request", testid: "request-form" },
      () => void this.create(),
      h("h2", {}, "New request"),
      errorSlot("request"),
      title.wrapper,
      description.wrapper,
      submitRow("create-request", "Create request"),
    );
    this.more.addEventListener("click", () => void this.load(this.pages.next));
    replace(this.element, this.list, this.more, this.detail, this.form);
  }

  dirty(): boolean {
    return this.title.value.trim() !== "" || this.description.value.trim() !== "" || !!this.commentInput?.value.trim();
  }

  /** Closes the open request's detail; false when none was open. */
  closeDetail(): boolean {
    if (this.selected === null) return false;
    if (this.commentInput?.value.trim() && !window.confirm("Discard your comment?")) return true;
    this.selected = null;
    this.commentInput = null;
    this.detail.hidden = true;
    this.renderList();
    return true;
  }

  /** Loads the first page (or the page of `token`, appended). */
  async load(token = ""): Promise<void> {
    try {
      const response = await this.app.api.requests.listRequests({ customerId: this.customer.id, pageSize: PAGE, pageToken: token });
      this.pages.take(token, response.requests, response.nextPageToken);
      this.renderList();
      const selected = this.pages.entries.find((request) => request.id === this.selected);
      if (selected && !this.commentInput?.value.trim()) void this.showDetail(selected);
    } catch (error) {
      this.app.message(describe(error));
    }
  }

  private renderList(): void {
    fillList(this.list, this.pages.entries, "No requests yet.", (request) =>
      h(
        "li",
        { class: `item${request.id === this.selected ? " selected" : ""}`, testid: "request", "data-id": request.id, "data-status": statusLabel(request.status).toLowerCase() },
        h(
          "button",
          { type: "button", class: "item-main", onclick: () => void this.toggle(request) },
          h("span", { class: `badge status-${statusLabel(request.status).toLowerCase()}`, testid: "request-status" }, statusLabel(request.status)),
          h("span", { class: "name" }, request.title),
          h("span", { class: "sub" }, `opened ${day(request.createTime)}`, request.closeTime ? ` · closed ${day(request.closeTime)}` : ""),
        ),
      ),
    );
  }

  private async toggle(request: Request): Promise<void> {
    if (this.selected === request.id) {
      this.closeDetail();
      return;
    }
    if (this.commentInput?.value.trim() && !window.confirm("Discard your comment?")) return;
    this.selected = request.id;
    this.renderList();
    await this.showDetail(request);
  }

  private async showDetail(request: Request): Promise<void> {
    const status = h(
      "select",
      { testid: "request-status-select", "aria-label": "Status" },
      REQUEST_STATUSES.map(([value, label]) => h("option", { value: String(value) }, label)),
    );
    status.value = String(request.status || RequestStatus.OPEN);
    const cancelled = request.status === RequestStatus.CANCELLED;
    const closed = request.status === RequestStatus.CLOSED;
    const quick = cancelled
      ? null
      : closed
        ? h("button", { type: "button", testid: "request-reopen", onclick: () => void this.setStatus(request, RequestStatus.OPEN) }, "Reopen")
        : h("button", { type: "button", testid: "request-close", onclick: () => void this.setStatus(request, RequestStatus.CLOSED) }, "Close request");
    const comments = h("ol", { class: "comments", testid: "comments" }, h("li", { class: "hint" }, "Loading comments…"));
    const comment = textArea("Add a comment", "text", "", MAX_TEXT_CHARS, "comment-counter");
    this.commentInput = comment.input;
    const commentForm = form(
      { class: "comment-form", testid: "comment-form" },
      () => void this.comment(request, commentForm, comment.input),
      comment.wrapper,
      h("button", { type: "submit", testid: "add-comment" }, "Add comment"),
    );
    replace(
      this.detail,
      h("h2", { testid: "request-title" }, request.title),
      h("p", { class: "meta" }, `Opened ${when(request.createTime)} by ${request.createdBy}`, request.closeTime ? ` · closed ${when(request.closeTime)}` : "", ` · version ${request.version}`),
      request.description ? h("p", { class: "description", testid: "request-description" }, request.description) : null,
      cancelled
        ? h("p", { class: "notice" }, "Cancelled requests are final.")
        : h(
            "div",
            { class: "actions" },
            quick,
            status,
            h("button", { type: "button", testid: "request-status-apply", onclick: () => void this.setStatus(request, Number(status.value) as RequestStatus) }, "Set status"),
          ),
      h("h3", {}, "Comments"),
      comments,
      cancelled ? null : commentForm,
    );
    this.detail.hidden = false;
    try {
      const response = await this.app.api.requests.listComments({ requestId: request.id, pageSize: 200 });
      replace(
        comments,
        response.comments.length === 0
          ? h("li", { class: "hint" }, "No comments yet.")
          : response.comments.map((c) =>
              h("li", { testid: "comment" }, h("div", { class: "meta" }, `${c.author} · ${when(c.createTime)}`), h("p", {}, c.text)),
            ),
      );
    } catch (error) {
      replace(comments, h("li", { class: "hint" }, describe(error)));
    }
  }

  private async setStatus(request: Request, status: RequestStatus): Promise<void> {
    if (status === request.status) return;
    if (status === RequestStatus.CANCELLED && !window.confirm("Cancel this request? Its comments are deleted and it cannot change again.")) return;
    try {
      const updated = await this.app.api.requests.updateRequest({
        request: { id: request.id, version: request.version, status },
        updateMask: { paths: ["status"] },
      });
      this.pages.entries = this.pages.entries.map((r) => (r.id === updated.id ? updated : r));
      this.renderList();
      await this.showDetail(updated);
      this.app.message(`Request ${statusLabel(updated.status).toLowerCase()}.`, "info");
    } catch (error) {
      const stale = staleSave(error);
      if (stale) this.app.staleBanner("a request", stale.updatedBy);
      else this.app.message(describe(error));
    }
  }

  private async comment(request: Request, form: HTMLFormElement, input: HTMLTextAreaElement): Promise<void> {
    if (!input.value.trim()) return;
    await submitForm(form, "text", (text) => this.app.message(text), async () => {
      await this.app.api.requests.addComment({ requestId: request.id, text: input.value });
      input.value = "";
      input.dispatchEvent(new Event("input"));
      await this.showDetail(request);
    });
  }

  private async create(): Promise<void> {
    await submitForm(this.form, "request", (text) => this.app.message(text), async () => {
      const created = await this.app.api.requests.createRequest({
        request: { customerId: this.customer.id, title: this.title.value.trim(), description: this.description.value },
      });
      this.title.value = "";
      this.description.value = "";
      this.description.dispatchEvent(new Event("input"));
      this.selected = created.id;
      await this.load();
      this.app.message("Request created.", "info");
    });
  }
}
