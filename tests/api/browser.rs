//! The agent gadget in real headless Chromium against a real server: what agents see of each other's saves
//! (the banner, presence), of routed calls (the screen-pop), of the service's field violations, and of a restart
//! of the service. With `CUSTOMER_CONTEXT_SCREENSHOTS=DIR` the tests also write the README's screenshots.

mod chromium;

use std::time::{Duration, Instant};

use customer_context::pb::{self, RequestStatus};
use tonic_types::StatusExt;

use rstest::rstest;
use rstest_reuse::apply;

use self::chromium::{AgentPage, Chromium, LOAD, js, testid};
use crate::context::{call, open};
use crate::harness::*;

/// How soon an agent sees what another agent or a router did.
const PROMPTLY: Duration = Duration::from_secs(2);

/// The name of a test's failure screenshots: the test and its backend.
fn test_name(test: &str, backend: Backend) -> String {
    let backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    format!("{test}-{backend}")
}

/// The README's screenshots are taken once, on SQLite.
fn takes_docs_screenshots(backend: Backend) -> bool {
    backend == Backend::Sqlite
}

/// `page` finds the customer `id` by typing `query` into the search box and opens it from the results.
async fn open_customer(page: &AgentPage, query: &str, id: &str) {
    page.type_into(&testid("search-input"), query).await;
    let result = format!("{}[data-id={}]", testid("search-result"), js(id));
    // The answer to the query has the first result selected (the list shown before the query has none).
    page.wait_for(
        "the search's results",
        &format!(
            "document.querySelector({}) !== null && document.querySelector('[data-testid=search-result][aria-selected=true]') !== null",
            js(&result)
        ),
        LOAD,
    )
    .await;
    page.click(&result).await;
    showing_customer(page, id, LOAD).await;
}

/// Waits until `page` shows the customer `id` with its requests and journey loaded; returns how long it took.
async fn showing_customer(page: &AgentPage, id: &str, timeout: Duration) -> Duration {
    let shown = page
        .wait_for(
            "the customer",
            &format!(
                "document.getElementById('customer').dataset.customerId === {} \
                 && !document.getElementById('customer').hidden",
                js(id)
            ),
            timeout,
        )
        .await;
    page.wait_for(
        "the requests and journey",
        "document.querySelector('[data-testid=request-list]')?.children.length > 0 \
         && document.querySelector('[data-testid=journey-list]')?.children.length > 0",
        LOAD,
    )
    .await;
    shown
}

/// The agents `page` lists as present on the customer on screen: `(agent, editing)`.
async fn presence(page: &AgentPage) -> Vec<(String, bool)> {
    page.eval(
        "[...document.querySelectorAll('[data-testid=presence-chip]')]\
         .map(chip => [chip.dataset.agent, chip.dataset.editing === 'true'])",
    )
    .await
}

/// Waits until `page` lists `agent` as present, editing or only viewing.
async fn until_present(
    page: &AgentPage,
    agent: &str,
    editing: bool,
    since: Instant,
    limit: Duration,
) {
    let word = if editing { "editing" } else { "viewing" };
    page.wait_until(
        &format!("chip \"{agent} {word}\""),
        &format!(
            "[...document.querySelectorAll('[data-testid=presence-chip]')].some(chip => \
             chip.dataset.agent === {agent} && chip.dataset.editing === '{editing}' \
             && chip.textContent === {text})",
            agent = js(agent),
            text = js(&format!("{agent} {word}")),
        ),
        since,
        limit,
    )
    .await;
}

/// The banner's text when it is on screen.
const BANNER_SHOWN: &str = "!document.getElementById('banner').hidden";

/// No error message and no field error on screen.
const NO_ERROR: &str = "(document.getElementById('message').hidden \
     || document.getElementById('message').dataset.kind !== 'error') \
     && document.querySelectorAll('[data-error-for]:not([hidden])').length === 0";

/// The text of the error slot of the field path `field` when it shows an error, else "".
fn field_error(field: &str) -> String {
    format!(
        "(document.querySelector('[data-error-for={}]:not([hidden])')?.textContent ?? '')",
        js(field)
    )
}

/// A server on a fresh database of `backend` holding Carla Diaz with her history, and a browser for the test
/// `name`; None (the test is skipped) when the backend or the browser is not available here.
async fn carla_in_chromium(
    backend: Backend,
    name: &str,
) -> Option<(TestApp, Chromium, pb::Customer)> {
    let app = TestApp::spawn(backend).await?;
    let chromium = Chromium::launch(&test_name(name, backend)).await?;
    let (carla, _, _) = carla_with_history(&app).await;
    Some((app, chromium, carla))
}

/// Carla Diaz of Northwind Traders: contact points, tags and notes, three requests and three activities.
async fn carla_with_history(app: &TestApp) -> (pb::Customer, Vec<pb::Request>, Vec<pb::Activity>) {
    let carla = app
        .create_customer(pb::Customer {
            company: "Northwind Traders".to_owned(),
            contact_points: vec![
                phone("+1 415 555 0100"),
                email("carla.diaz@northwind.example"),
            ],
            tags: strings(&["vip", "billing"]),
            notes: "Prefers a call back in the morning.".to_owned(),
            ..numbered_customer("C-1042", "Carla", "Diaz")
        })
        .await;
    app.create_request_in_status(
        "ana",
        &carla.id,
        "Invoice 2024-118 charged twice",
        RequestStatus::Closed,
    )
    .await;
    app.create_request_in_status(
        "ben",
        &carla.id,
        "Second line for the warehouse",
        RequestStatus::Pending,
    )
    .await;
    let router = app
        .create_request(pb::Request {
            description: "The router restarts every few hours since the firmware update."
                .to_owned(),
            ..request(&carla.id, "Router keeps restarting")
        })
        .await;
    app.comment_on("ben", &router.id, "Asked for the router's logs.")
        .await;
    app.create_activity(pb::Activity {
        request_id: router.id.clone(),
        notes: "Router restarts every few hours.".to_owned(),
        ..activity(&carla.id, "Reported router restarts")
    })
    .await;
    app.create_activity(pb::Activity {
        channel: pb::Channel::Email as i32,
        direction: pb::Direction::Outgoing as i32,
        request_id: router.id.clone(),
        ..activity(&carla.id, "Sent the firmware rollback guide")
    })
    .await;
    app.create_activity(pb::Activity {
        internal: true,
        channel: pb::Channel::Other as i32,
        direction: pb::Direction::Unspecified as i32,
        notes: "Tier 2 to check the line's noise margin.".to_owned(),
        ..activity(&carla.id, "Escalated to tier 2")
    })
    .await;
    let requests = app.requests_of(&carla.id).await;
    let activities = app.activities_of(&carla.id).await;
    assert_eq!((requests.len(), activities.len()), (3, 3));
    (carla, requests, activities)
}

/// A voice call from `phone` by `display_name`, routed to agent Ana.
fn routed_to_ana(interaction_id: &str, phone: &str, display_name: &str) -> pb::OpenContextRequest {
    pb::OpenContextRequest {
        display_name: display_name.to_owned(),
        agent: "Ana".to_owned(),
        ..call(interaction_id, phone)
    }
}

/// The lower-case label the page gives a request status.
fn status_label(status: i32) -> &'static str {
    match RequestStatus::try_from(status) {
        Ok(RequestStatus::Pending) => "pending",
        Ok(RequestStatus::Closed) => "closed",
        Ok(RequestStatus::Cancelled) => "cancelled",
        _ => "open",
    }
}

#[apply(backends)]
#[tokio::test]
async fn a_customer_opened_from_search_shows_profile_requests_and_journey(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let chromium = or_skip!(Chromium::launch(&test_name("customer-view", backend)).await);
    let (carla, requests, activities) = carla_with_history(&app).await;
    chromium
        .run(async |chromium| {
            let ana = chromium.open_gadget(app.addr, "Ana").await;
            // The keyboard way: type, Enter opens the first result.
            ana.type_into(&testid("search-input"), "northwind").await;
            ana.wait_for(
                "Carla in the results",
                &format!(
                    "document.querySelector('[data-testid=search-result][aria-selected=true]')?.dataset.id === {}",
                    js(&carla.id)
                ),
                LOAD,
            )
            .await;
            ana.press(&testid("search-input"), "Enter").await;
            showing_customer(&ana, &carla.id, LOAD).await;

            assert_eq!(ana.text(&testid("customer-title")).await, "Carla Diaz");
            assert_eq!(
                ana.value(&testid("field-customer.company")).await,
                "Northwind Traders"
            );
            let tags: Vec<String> = ana
                .eval("[...document.querySelectorAll('[data-testid=tag-chip]')].map(chip => chip.firstChild.textContent)")
                .await;
            assert_eq!(tags, ["vip", "billing"]);
            assert!(
                ana.text(&testid("profile-meta")).await.starts_with("Version 1"),
                "the profile shows its version"
            );

            // Requests: newest first, each with its status.
            ana.click(&testid("tab-requests")).await;
            let shown: Vec<(String, String)> = ana
                .eval("[...document.querySelectorAll('[data-testid=request]')].map(r => [r.dataset.id, r.dataset.status])")
                .await;
            let expected: Vec<(String, String)> = requests
                .iter()
                .map(|r| (r.id.clone(), status_label(r.status).to_owned()))
                .collect();
            assert_eq!(shown, expected);
            let router = &requests[0];
            ana.click(&format!("{}[data-id={}] button", testid("request"), js(&router.id)))
                .await;
            ana.wait_for(
                "the request's comment",
                "document.querySelector('[data-testid=comment]')?.textContent.includes('Asked for the router')",
                LOAD,
            )
            .await;
            assert_eq!(
                ana.text(&testid("request-title")).await,
                "Router keeps restarting"
            );
            ana.screenshot_for_docs_if(takes_docs_screenshots(backend), "customer.png")
                .await;

            // Journey: newest first, incoming and outgoing marked, the internal note flagged.
            ana.click(&testid("tab-journey")).await;
            let journey: Vec<(String, String, String)> = ana
                .eval("[...document.querySelectorAll('[data-testid=activity]')].map(a => [a.dataset.id, a.dataset.direction, a.dataset.internal])")
                .await;
            let expected: Vec<(String, String, String)> = activities
                .iter()
                .map(|a| {
                    let direction = match pb::Direction::try_from(a.direction) {
                        Ok(pb::Direction::Incoming) => "incoming",
                        Ok(pb::Direction::Outgoing) => "outgoing",
                        _ => "none",
                    };
                    (a.id.clone(), direction.to_owned(), a.internal.to_string())
                })
                .collect();
            assert_eq!(journey, expected);
            let badges: usize = ana
                .eval("document.querySelectorAll('[data-testid=activity] [data-testid=internal-badge]').length")
                .await;
            assert_eq!(badges, 1);
            ana.screenshot_for_docs_if(takes_docs_screenshots(backend), "journey.png")
                .await;
        })
        .await;
}

#[apply(backends)]
#[tokio::test]
async fn a_save_by_another_agent_shows_a_banner_and_a_stale_save_shows_it_again(backend: Backend) {
    let (app, chromium, carla) = or_skip!(carla_in_chromium(backend, "banner").await);
    chromium
        .run(async |chromium| {
            let ana = chromium.open_gadget(app.addr, "Ana").await;
            let ben = chromium.open_gadget(app.addr, "Ben").await;
            open_customer(&ana, "Diaz", &carla.id).await;
            open_customer(&ben, "Diaz", &carla.id).await;
            // Both are on the record (each page's subscription is confirmed by the other's presence).
            until_present(&ana, "Ben", false, Instant::now(), LOAD).await;
            until_present(&ben, "Ana", false, Instant::now(), LOAD).await;

            let notes = testid("field-customer.notes");
            ben.type_into(&notes, "Call back after 5 pm only.").await;
            let saved = Instant::now();
            ben.click(&testid("save-customer")).await;
            let took = ana
                .wait_until(
                    "banner \"Changed by Ben\"",
                    &format!(
                        "{BANNER_SHOWN} && document.getElementById('banner-text').textContent.startsWith('Changed by Ben')"
                    ),
                    saved,
                    PROMPTLY,
                )
                .await;
            eprintln!("Ana saw Ben's save after {took:?}");
            assert_eq!(
                ana.text(&testid("banner-text")).await,
                "Changed by Ben · profile: notes"
            );
            ben.wait_for(
                "Ben's save confirmed",
                "document.querySelector('[data-testid=profile-meta]').textContent.startsWith('Version 2')",
                LOAD,
            )
            .await;
            ana.screenshot_for_docs_if(takes_docs_screenshots(backend), "banner.png")
                .await;

            // Ana dismisses it and saves her own edit of the version she still has: the service refuses it as
            // stale and the page says who changed the record, not an error.
            ana.click(&testid("banner-dismiss")).await;
            assert!(!ana.visible(&testid("banner")).await);
            assert_eq!(
                ana.value(&notes).await,
                "Prefers a call back in the morning."
            );
            ana.type_into(&notes, "Wants a technician on site.").await;
            let stale = Instant::now();
            ana.click(&testid("save-customer")).await;
            ana.wait_until(
                "banner \"Changed by Ben\" again",
                &format!(
                    "{BANNER_SHOWN} && document.getElementById('banner-text').textContent.startsWith('Changed by Ben')"
                ),
                stale,
                PROMPTLY,
            )
            .await;
            assert!(ana.eval::<bool>(NO_ERROR).await, "{}", ana.state().await);
            assert_eq!(
                app.get_customer(&carla.id).await.expect("carla").notes,
                "Call back after 5 pm only.",
                "the stale save changed nothing"
            );

            // Load (confirming that her unsaved edit goes) shows Ben's value.
            ana.click(&testid("banner-load")).await;
            ana.wait_for(
                "Ben's notes",
                &format!(
                    "document.querySelector({}).value === 'Call back after 5 pm only.'",
                    js(&notes)
                ),
                LOAD,
            )
            .await;
            assert!(!ana.visible(&testid("banner")).await);
            assert!(
                ana.text(&testid("profile-meta")).await.starts_with("Version 2"),
                "Ana now has Ben's version"
            );
            assert_eq!(
                ana.dialogs(),
                ["Load the saved version? Your unsaved changes will be lost."]
            );
        })
        .await;
}

#[apply(backends)]
#[tokio::test]
async fn presence_shows_who_views_and_who_edits(backend: Backend) {
    let (app, chromium, carla) = or_skip!(carla_in_chromium(backend, "presence").await);
    chromium
        .run(async |chromium| {
            let ana = chromium.open_gadget(app.addr, "Ana").await;
            let ben = chromium.open_gadget(app.addr, "Ben").await;
            open_customer(&ana, "Diaz", &carla.id).await;
            assert_eq!(presence(&ana).await, []);
            let opened = Instant::now();
            open_customer(&ben, "Diaz", &carla.id).await;
            until_present(&ana, "Ben", false, opened, LOAD).await;

            // Ben types without saving: Ana sees him editing.
            let typed = Instant::now();
            ben.type_into(&testid("field-customer.first_name"), "Karla")
                .await;
            until_present(&ana, "Ben", true, typed, PROMPTLY).await;
            assert_eq!(presence(&ana).await, [("Ben".to_owned(), true)]);
            // Ana's own page does not list her, and Ben sees her viewing.
            until_present(&ben, "Ana", false, Instant::now(), LOAD).await;

            // Ben discards his change: viewing again. He closes the customer: gone from Ana's page.
            let cancelled = Instant::now();
            ben.click(&testid("cancel-customer")).await;
            until_present(&ana, "Ben", false, cancelled, PROMPTLY).await;
            assert_eq!(ben.dialogs(), ["Discard your changes?"]);
            let closed = Instant::now();
            ben.click(&testid("close-customer")).await;
            ana.wait_until(
                "no presence chips",
                "document.querySelectorAll('[data-testid=presence-chip]').length === 0",
                closed,
                PROMPTLY,
            )
            .await;
        })
        .await;
}

#[apply(backends)]
#[tokio::test]
async fn a_routed_call_pops_the_caller_or_a_prefilled_new_customer_form(backend: Backend) {
    let (app, chromium, carla) = or_skip!(carla_in_chromium(backend, "screen-pop").await);
    chromium
        .run(async |chromium| {
            let ana = chromium.open_gadget(app.addr, "Ana").await;

            // A known caller: her customer opens by itself.
            let routed = Instant::now();
            let answer = open(
                &app,
                routed_to_ana("call-1", "(415) 555-0100", "Carla Diaz"),
            )
            .await
            .expect("known caller routed");
            assert_eq!(
                answer.customer.as_ref().map(|c| c.id.as_str()),
                Some(carla.id.as_str())
            );
            let took = ana
                .wait_until(
                    "the caller's customer",
                    &format!(
                        "document.getElementById('customer').dataset.customerId === {} \
                         && !document.getElementById('customer').hidden",
                        js(&carla.id)
                    ),
                    routed,
                    PROMPTLY,
                )
                .await;
            eprintln!("the known caller popped after {took:?}");
            assert!(ana.visible(&testid("screen-pop")).await);
            assert_eq!(
                ana.eval::<String>(
                    "document.querySelector('[data-testid=screen-pop]').dataset.interactionId"
                )
                .await,
                "call-1"
            );
            assert_eq!(ana.text(&testid("customer-title")).await, "Carla Diaz");
            showing_customer(&ana, &carla.id, LOAD).await;
            ana.screenshot_for_docs_if(takes_docs_screenshots(backend), "screen-pop.png")
                .await;

            // An unknown caller: a new-customer form prefilled from what the router knew.
            let routed = Instant::now();
            let unknown = routed_to_ana("call-2", "+1 415 555 0199", "Dana Evans");
            let answer = open(&app, unknown).await.expect("unknown caller routed");
            assert_eq!(answer.customer, None);
            let prefill = answer.prefill.expect("a prefill");
            let activity = answer.activity.expect("the call is logged");
            ana.wait_until(
                "the prefilled new-customer form",
                "!document.querySelector('[data-testid=new-customer-view]').hidden \
                 && document.querySelector('[data-testid=new-customer-form]') !== null",
                routed,
                PROMPTLY,
            )
            .await;
            let form = testid("new-customer-form");
            assert_eq!(
                ana.value(&format!("{form} {}", testid("field-customer.first_name")))
                    .await,
                "Dana"
            );
            assert_eq!(
                ana.value(&format!("{form} {}", testid("field-customer.last_name")))
                    .await,
                "Evans"
            );
            assert_eq!(
                ana.value(&format!("{form} {}", testid("contact-value")))
                    .await,
                prefill.phone
            );
            assert!(!ana.visible(&testid("customer-view")).await);

            // Creating the customer links the call's activity to it.
            ana.click(&testid("create-customer")).await;
            ana.wait_for(
                "the created customer",
                "!document.getElementById('customer').hidden \
                 && document.getElementById('customer-title').textContent === 'Dana Evans'",
                LOAD,
            )
            .await;
            let dana_id: String = ana
                .eval("document.getElementById('customer').dataset.customerId")
                .await;
            ana.wait_for(
                "the call in Dana's journey",
                &format!(
                    "document.querySelector('[data-testid=activity][data-id={}]') !== null",
                    js(&activity.id)
                ),
                LOAD,
            )
            .await;
            let linked = app.get_activity(&activity.id).await.expect("activity");
            assert_eq!(linked.customer_id, dana_id);
        })
        .await;
}

#[apply(backends)]
#[tokio::test]
async fn field_violations_from_the_service_are_shown_next_to_their_inputs(backend: Backend) {
    let (app, chromium, carla) = or_skip!(carla_in_chromium(backend, "field-errors").await);
    let long_description = "x".repeat(2001);
    // What the service says about each input, asked directly.
    let too_long = violation(
        app.create_request_as(
            "ana",
            pb::Request {
                description: long_description.clone(),
                ..request(&carla.id, "Too long")
            },
        )
        .await,
        "request.description",
    );
    // The page refuses a tag equal to another ignoring case before sending it; one that differs only by a
    // trailing NEL (U+0085, which the service trims and the browser does not) reaches the service, whose
    // violation is what the page must show.
    let duplicate_tag = "VIP\u{85}";
    let duplicate = violation(
        app.patch_customer(
            "ana",
            pb::Customer {
                tags: strings(&["vip", "billing", duplicate_tag]),
                ..carla.clone()
            },
            &["tags"],
        )
        .await,
        "customer.tags[2]",
    );
    chromium
        .run(async |chromium| {
            let ana = chromium.open_gadget(app.addr, "Ana").await;
            open_customer(&ana, "Diaz", &carla.id).await;

            // A request description of 2,001 characters.
            ana.click(&testid("tab-requests")).await;
            ana.type_into(&testid("field-request.title"), "Router still restarting")
                .await;
            ana.type_into(&testid("field-request.description"), &long_description)
                .await;
            assert_eq!(
                ana.text(&testid("description-counter")).await,
                "2,001 / 2,000"
            );
            let sent = Instant::now();
            ana.click(&testid("create-request")).await;
            ana.wait_until(
                "the description's error",
                &format!(
                    "{} === {}",
                    field_error("request.description"),
                    js(&too_long)
                ),
                sent,
                PROMPTLY,
            )
            .await;
            assert_eq!(app.requests_of(&carla.id).await.len(), 3, "nothing created");

            // A duplicate tag.
            ana.click(&testid("tab-profile")).await;
            ana.type_into(&testid("tag-input"), duplicate_tag).await;
            ana.press(&testid("tag-input"), "Enter").await;
            ana.wait_for(
                "the third tag chip",
                "document.querySelectorAll('[data-testid=tag-chip]').length === 3",
                LOAD,
            )
            .await;
            let sent = Instant::now();
            ana.click(&testid("save-customer")).await;
            ana.wait_until(
                "the tag's error",
                &format!("{} === {}", field_error("customer.tags"), js(&duplicate)),
                sent,
                PROMPTLY,
            )
            .await;
            assert_eq!(
                app.get_customer(&carla.id).await.expect("carla").tags,
                ["vip", "billing"],
                "nothing saved"
            );
            assert!(!ana.visible(&testid("banner")).await);
        })
        .await;
}

/// The description of the violation at `field` of a call the service must refuse as INVALID_ARGUMENT.
#[track_caller]
fn violation<T: std::fmt::Debug>(result: Result<T, tonic::Status>, field: &str) -> String {
    let status = err(result);
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let details = status.get_details_bad_request().expect("field violations");
    details
        .field_violations
        .iter()
        .find(|v| v.field == field)
        .unwrap_or_else(|| panic!("no violation at {field}: {details:?}"))
        .description
        .clone()
}

#[apply(backends)]
#[tokio::test]
async fn after_a_restart_the_page_reconnects_and_shows_what_changed_meanwhile(backend: Backend) {
    let (app, db) = or_skip!(TestApp::spawn_keeping_db(backend).await);
    let chromium = or_skip!(Chromium::launch(&test_name("restart", backend)).await);
    let (carla, _, _) = carla_with_history(&app).await;
    let addr = app.addr;
    let mut first = Some(app);
    chromium
        .run(async |chromium| {
            let ana = chromium.open_gadget(addr, "Ana").await;
            open_customer(&ana, "Diaz", &carla.id).await;
            ana.eval::<i32>("window.__marker = 1").await;

            first.take().expect("first server").shutdown().await;
            // The page notices and retries with a growing backoff. While its address stays down, Ben saves
            // through another server on the same database (as on another replica), so the change is made while
            // the page is away whatever the machine's speed; then the service comes back on the page's address.
            ana.wait_for(
                "a retry seconds away",
                "/retrying in ([2-9]|\\d\\d) s/.test(document.getElementById('live-status').title)",
                LOAD,
            )
            .await;
            let other = TestApp::spawn_on(db.url()).await;
            let current = other.get_customer(&carla.id).await.expect("carla");
            other
                .patch_customer(
                    "Ben",
                    pb::Customer {
                        notes: "Moved to the new office.".to_owned(),
                        ..current
                    },
                    &["notes"],
                )
                .await
                .expect("Ben's save");
            other.shutdown().await;
            assert_eq!(
                ana.eval::<String>("document.getElementById('live-status').dataset.state")
                    .await,
                "reconnecting",
                "the page is away while Ben saves"
            );
            let app = TestApp::spawn_on_with(db.url(), |settings| settings.listen = addr).await;
            assert_eq!(app.addr, addr);
            let changed = Instant::now();

            // Back without a reload, and the change made meanwhile shows.
            ana.wait_live(LOAD).await;
            let took = ana
                .wait_until(
                    "banner \"Changed by Ben\"",
                    &format!(
                        "{BANNER_SHOWN} && document.getElementById('banner-text').textContent === \
                         'Changed by Ben · profile: notes'"
                    ),
                    changed,
                    LOAD,
                )
                .await;
            eprintln!("the page showed Ben's save {took:?} after the service came back");
            assert_eq!(ana.eval::<i32>("window.__marker").await, 1, "no reload");
            assert!(ana.eval::<bool>(NO_ERROR).await, "{}", ana.state().await);

            // Live again: a save now shows promptly.
            let current = app.get_customer(&carla.id).await.expect("carla");
            ana.click(&testid("banner-load")).await;
            ana.wait_for(
                "the banner gone",
                "document.getElementById('banner').hidden",
                LOAD,
            )
            .await;
            let saved = Instant::now();
            app.patch_customer(
                "Ben",
                pb::Customer {
                    company: "Northwind Logistics".to_owned(),
                    ..current
                },
                &["company"],
            )
            .await
            .expect("Ben's second save");
            ana.wait_until(
                "banner \"Changed by Ben\" after the second save",
                &format!(
                    "{BANNER_SHOWN} && document.getElementById('banner-text').textContent === \
                     'Changed by Ben · profile: company'"
                ),
                saved,
                PROMPTLY,
            )
            .await;
            app.shutdown().await;
        })
        .await;
    drop(db);
}
