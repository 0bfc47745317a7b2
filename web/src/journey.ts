// A customer's journey: activities newest first, a page at a time, incoming and outgoing marked, internal notes
// flagged; and a form to log one.

import { describe } from "./api.js";
import type { App } from "./app.js";
import { fillList, h, Pages, replace } from "./dom.js";
import { errorSlot, form, submitForm, submitRow, textArea, textField } from "./fields.js";
import { CHANNELS, channelLabel, directionLabel, when } from "./format.js";
import type { Activity } from "./gen/customer_context/v1/activity_pb.js";
import { Channel, Direction } from "./gen/customer_context/v1/common_pb.js";
import type { Customer } from "./gen/customer_context/v1/customer_pb.js";
import { MAX_TEXT_CHARS } from "./requests.js";

const PAGE = 20;

export class JourneyPanel {
  readonly element = h("div", { class: "journey" });
  private readonly list = h("ol", { class: "items timeline", testid: "journey-list" });
  private readonly more = h("button", { type: "button", class: "link", testid: "journey-more", hidden: true }, "Older activities");
  private readonly form: HTMLFormElement;
  private readonly topic: HTMLInputElement;
  private readonly notes: HTMLTextAreaElement;
  private readonly pages = new Pages<Activity>(this.more);

  constructor(
    private readonly app: App,
    private readonly customer: Customer,
  ) {
    const channel = h("select", { testid: "activity-channel", "aria-label": "Channel", "data-field": "activity.channel" },
      CHANNELS.map(([value, label]) => h("option", { value: String(value) }, label)));
    channel.value = String(Channel.VOICE);
    const direction = h("select", { testid: "activity-direction", "aria-label": "Direction", "data-field": "activity.direction" },
      h("option", { value: String(Direction.INCOMING) }, "Incoming"),
      h("option", { value: String(Direction.OUTGOING) }, "Outgoing"));
    const internal = h("input", { type: "checkbox", testid: "activity-internal" });
    const topic = textField("Topic", "activity.topic", "");
    const notes = textArea("Notes", "activity.notes", "", MAX_TEXT_CHARS, "activity-notes-counter");
    this.topic = topic.input;
    this.notes = notes.input;
    this.form = form(
      { class: "new-activity", testid: "activity-form" },
      () => void this.create(Number(channel.value) as Channel, Number(direction.value) as Direction, internal),
      h("h2", {}, "Log an activity"),
      errorSlot("activity"),
      h("div", { class: "row" }, channel, direction, h("label", { class: "checkbox" }, internal, " Internal")),
      topic.wrapper,
      notes.wrapper,
      submitRow("create-activity", "Add to journey"),
    );
    this.more.addEventListener("click", () => void this.load(this.pages.next));
    replace(this.element, this.form, this.list, this.more);
  }

  dirty(): boolean {
    return this.topic.value.trim() !== "" || this.notes.value.trim() !== "";
  }

  /** Loads the newest page (or appends the page of `token`). */
  async load(token = ""): Promise<void> {
    try {
      const response = await this.app.api.activities.listActivities({ customerId: this.customer.id, pageSize: PAGE, pageToken: token });
      this.pages.take(token, response.activities, response.nextPageToken);
      this.render();
    } catch (error) {
      this.app.message(describe(error));
    }
  }

  private render(): void {
    fillList(this.list, this.pages.entries, "No activities yet.", (activity) => {
      const incoming = activity.direction === Direction.INCOMING;
      const outgoing = activity.direction === Direction.OUTGOING;
      return h(
        "li",
        {
          class: `item activity${activity.internal ? " internal" : ""}`,
          testid: "activity",
          "data-id": activity.id,
          "data-direction": incoming ? "incoming" : outgoing ? "outgoing" : "none",
          "data-internal": String(activity.internal),
        },
        h(
          "div",
          { class: "activity-head" },
          h("span", { class: `direction ${incoming ? "in" : outgoing ? "out" : ""}`, title: directionLabel(activity.direction), "aria-label": directionLabel(activity.direction) }, incoming ? "↘" : outgoing ? "↗" : "•"),
          h("span", { class: "badge" }, channelLabel(activity.channel)),
          activity.internal ? h("span", { class: "badge warn", testid: "internal-badge" }, "Internal") : null,
          h("span", { class: "name" }, activity.topic || "(no topic)"),
          h("time", { class: "sub" }, when(activity.occurTime)),
        ),
        activity.notes ? h("p", { class: "notes" }, activity.notes) : null,
        h("div", { class: "meta" }, [activity.enteredBy && `by ${activity.enteredBy}`, activity.contactName, activity.reference && `ref ${activity.reference}`].filter(Boolean).join(" · ")),
      );
    });
  }

  private async create(channel: Channel, direction: Direction, internal: HTMLInputElement): Promise<void> {
    await submitForm(this.form, "activity", (text) => this.app.message(text), async () => {
      await this.app.api.activities.createActivity({
        activity: { customerId: this.customer.id, channel, direction, internal: internal.checked, topic: this.topic.value.trim(), notes: this.notes.value },
      });
      this.topic.value = "";
      this.notes.value = "";
      this.notes.dispatchEvent(new Event("input"));
      internal.checked = false;
      await this.load();
      this.app.message("Activity added.", "info");
    });
  }
}
