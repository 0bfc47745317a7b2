//! A portal key is bound to one customer: it never sees an internal activity or anything of another customer,
//! through any RPC, and its watch stream carries no event about an internal activity and no presence (an activity
//! made internal leaves its view as a deletion, one made public enters it as a creation).

use customer_context::pb::{
    self, ResourceRef, ResourceType, WatchEvent, WatchRequest,
    activity_service_client::ActivityServiceClient, context_service_client::ContextServiceClient,
    customer_service_client::CustomerServiceClient, lookup_customers_request::Key,
    request_service_client::RequestServiceClient, watch_event::Event,
    watch_request::Request as Req, watch_service_client::WatchServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

const SHARED_PHONE: &str = "+14155550100";

/// Carla (the portal's customer) and Dan (another customer sharing her phone), each with a request, a comment,
/// and activities; Carla also has an internal one.
struct World {
    carla: pb::Customer,
    dan: pb::Customer,
    carla_request: pb::Request,
    dan_request: pb::Request,
    carla_public: pb::Activity,
    carla_internal: pb::Activity,
    dan_activity: pb::Activity,
    portal: String,
}

async fn world(app: &TestApp) -> World {
    let carla = app
        .create_customer(pb::Customer {
            contact_points: vec![phone(SHARED_PHONE), email("carla@example.com")],
            ..customer("Carla", "Diaz")
        })
        .await;
    let dan = app
        .create_customer(pb::Customer {
            contact_points: vec![phone(SHARED_PHONE), email("dan@example.com")],
            ..customer("Dan", "Diaz")
        })
        .await;
    let carla_request = app.create_request(request(&carla.id, "Broken")).await;
    let dan_request = app.create_request(request(&dan.id, "Invoice")).await;
    for r in [&carla_request, &dan_request] {
        ok(RequestServiceClient::new(app.channel())
            .add_comment(app.setup(pb::AddCommentRequest {
                request_id: r.id.clone(),
                text: "we are on it".into(),
            }))
            .await);
    }
    let carla_public = app
        .create_activity(activity_on_request(&carla.id, &carla_request.id, "call"))
        .await;
    let carla_internal = app
        .create_activity(pb::Activity {
            internal: true,
            ..activity_on_request(&carla.id, &carla_request.id, "difficult customer")
        })
        .await;
    let dan_activity = app.create_activity(activity(&dan.id, "call")).await;
    let portal = app
        .mint_key("portal-carla", "portal", Some(&carla.id))
        .await;
    World {
        carla,
        dan,
        carla_request,
        dan_request,
        carla_public,
        carla_internal,
        dan_activity,
        portal,
    }
}

#[apply(backends)]
#[tokio::test]
async fn a_portal_reads_only_its_customer_and_never_an_internal_activity(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    let w = world(&app).await;
    let key = w.portal.as_str();
    let mut customers = CustomerServiceClient::new(app.channel());
    let mut requests = RequestServiceClient::new(app.channel());
    let mut activities = ActivityServiceClient::new(app.channel());

    // Customers: Get, Search, Lookup.
    let get = |id: &str| pb::GetCustomerRequest { id: id.to_owned() };
    assert_eq!(
        ok(customers.get_customer(keyed(key, get(&w.carla.id))).await).id,
        w.carla.id
    );
    assert_not_found(customers.get_customer(keyed(key, get(&w.dan.id))).await);
    assert_not_found(customers.get_customer(keyed(key, get(&unknown_id()))).await);
    let search = |query: &str| pb::SearchCustomersRequest {
        query: query.to_owned(),
        ..Default::default()
    };
    for (query, expected) in [
        ("", vec![w.carla.id.clone()]),
        ("Diaz", vec![w.carla.id.clone()]),
        ("car", vec![w.carla.id.clone()]),
        ("Dan", vec![]),
        (SHARED_PHONE, vec![w.carla.id.clone()]),
    ] {
        let found = ok(customers.search_customers(keyed(key, search(query))).await);
        let ids: Vec<String> = found.customers.into_iter().map(|c| c.id).collect();
        assert_eq!(ids, expected, "search {query:?}");
    }
    let lookup = |key: Key| pb::LookupCustomersRequest { key: Some(key) };
    let found = ok(customers
        .lookup_customers(keyed(key, lookup(Key::Phone(SHARED_PHONE.into()))))
        .await);
    assert_eq!(
        found.customers.iter().map(|c| &c.id).collect::<Vec<_>>(),
        [&w.carla.id]
    );
    let found = ok(customers
        .lookup_customers(keyed(key, lookup(Key::Email("dan@example.com".into()))))
        .await);
    assert!(found.customers.is_empty());

    // Requests and comments.
    let get_request = |id: &str| pb::GetRequestRequest { id: id.to_owned() };
    ok(requests
        .get_request(keyed(key, get_request(&w.carla_request.id)))
        .await);
    assert_not_found(
        requests
            .get_request(keyed(key, get_request(&w.dan_request.id)))
            .await,
    );
    let list = |customer_id: &str| pb::ListRequestsRequest {
        customer_id: customer_id.to_owned(),
        ..Default::default()
    };
    let listed = ok(requests.list_requests(keyed(key, list(&w.carla.id))).await);
    assert_eq!(listed.requests.len(), 1);
    assert_not_found(requests.list_requests(keyed(key, list(&w.dan.id))).await);
    let comments = |request_id: &str| pb::ListCommentsRequest {
        request_id: request_id.to_owned(),
        ..Default::default()
    };
    let listed = ok(requests
        .list_comments(keyed(key, comments(&w.carla_request.id)))
        .await);
    assert_eq!(listed.comments.len(), 1);
    assert_not_found(
        requests
            .list_comments(keyed(key, comments(&w.dan_request.id)))
            .await,
    );

    // Activities: the internal one does not exist for the portal.
    let get_activity = |id: &str| pb::GetActivityRequest { id: id.to_owned() };
    ok(activities
        .get_activity(keyed(key, get_activity(&w.carla_public.id)))
        .await);
    assert_not_found(
        activities
            .get_activity(keyed(key, get_activity(&w.carla_internal.id)))
            .await,
    );
    assert_not_found(
        activities
            .get_activity(keyed(key, get_activity(&w.dan_activity.id)))
            .await,
    );
    let list_activities = |customer_id: &str, request_id: &str| pb::ListActivitiesRequest {
        customer_id: customer_id.to_owned(),
        request_id: request_id.to_owned(),
        page_size: 1,
        ..Default::default()
    };
    for (customer_id, request_id) in [
        (w.carla.id.as_str(), ""),
        ("", w.carla_request.id.as_str()),
        (w.carla.id.as_str(), w.carla_request.id.as_str()),
    ] {
        // Pages of one: the internal activity is not even counted in the pages.
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = ok(activities
                .list_activities(keyed(
                    key,
                    pb::ListActivitiesRequest {
                        page_token: token.clone(),
                        ..list_activities(customer_id, request_id)
                    },
                ))
                .await);
            seen.extend(page.activities.into_iter().map(|a| a.id));
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(
            seen,
            std::slice::from_ref(&w.carla_public.id),
            "{customer_id:?} {request_id:?}"
        );
    }
    assert_not_found(
        activities
            .list_activities(keyed(key, list_activities(&w.dan.id, "")))
            .await,
    );
    assert_not_found(
        activities
            .list_activities(keyed(key, list_activities("", &w.dan_request.id)))
            .await,
    );

    // OpenContext is the router's, never a portal's.
    let open = ContextServiceClient::new(app.channel())
        .open_context(keyed(
            key,
            pb::OpenContextRequest {
                interaction_id: "i-1".into(),
                phone: SHARED_PHONE.into(),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(err(open).code(), Code::PermissionDenied);
}

#[apply(backends)]
#[tokio::test]
async fn a_portal_adds_only_incoming_public_activities_of_its_customer(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    let w = world(&app).await;
    let mut activities = ActivityServiceClient::new(app.channel());
    let create =
        |a: pb::Activity| keyed(&w.portal, pb::CreateActivityRequest { activity: Some(a) });
    // The customer is taken to be the portal's; the portal is who entered it, whatever it claims.
    let created = ok(activities
        .create_activity(create(pb::Activity {
            entered_by: "ana".into(),
            ..activity_on_request("", &w.carla_request.id, "web form")
        }))
        .await);
    assert_eq!(created.customer_id, w.carla.id);
    assert_eq!(created.entered_by, "portal-carla");
    assert_eq!(created.created_by, "portal-carla");

    for refused in [
        pb::Activity {
            direction: pb::Direction::Outgoing as i32,
            ..activity(&w.carla.id, "outgoing")
        },
        pb::Activity {
            direction: pb::Direction::Unspecified as i32,
            ..activity(&w.carla.id, "no direction")
        },
        pb::Activity {
            internal: true,
            ..activity(&w.carla.id, "internal")
        },
    ] {
        let status = err(activities.create_activity(create(refused)).await);
        assert_error(&status, Code::PermissionDenied, "PORTAL_INCOMING_ONLY");
    }
    assert_not_found(
        activities
            .create_activity(create(activity(&w.dan.id, "other customer")))
            .await,
    );
    assert_not_found(
        activities
            .create_activity(create(activity_on_request(
                "",
                &w.dan_request.id,
                "other request",
            )))
            .await,
    );
    assert_not_found(
        activities
            .create_activity(create(activity_on_request(
                &w.carla.id,
                &w.dan_request.id,
                "other request",
            )))
            .await,
    );
    // Nothing refused was written.
    let listed = app.activities_of(&w.dan.id).await;
    assert_eq!(listed.len(), 1);
}

/// A watch stream opened with `key`.
async fn watch(app: &TestApp, key: &str) -> (mpsc::Sender<WatchRequest>, Streaming<WatchEvent>) {
    let (tx, rx) = mpsc::channel(16);
    let events = within(
        "watch open",
        WatchServiceClient::new(app.new_channel().await).watch(keyed(key, ReceiverStream::new(rx))),
    )
    .await
    .expect("watch opens")
    .into_inner();
    (tx, events)
}

fn subscribe(resources: Vec<ResourceRef>, resume_after: i64) -> WatchRequest {
    WatchRequest {
        request: Some(Req::Subscribe(pb::Subscribe {
            resources,
            resume_after,
            include_own_changes: true,
            ..Default::default()
        })),
    }
}

fn reference(kind: ResourceType, id: &str, known_version: i64) -> ResourceRef {
    ResourceRef {
        r#type: kind as i32,
        id: id.to_owned(),
        known_version,
    }
}

/// Events until a change of `id` arrives; every event before it is returned too.
async fn events_until(events: &mut Streaming<WatchEvent>, id: &str) -> Vec<WatchEvent> {
    let mut seen = Vec::new();
    loop {
        let event = within("next watch event", events.message())
            .await
            .expect("stream healthy")
            .expect("stream open");
        let done = matches!(&event.event, Some(Event::ResourceChanged(c))
            if c.resource.as_ref().is_some_and(|r| r.id == id));
        seen.push(event);
        if done {
            return seen;
        }
    }
}

#[track_caller]
fn assert_nothing_internal_or_foreign(events: &[WatchEvent], w: &World, internal: &[&str]) {
    for event in events {
        match &event.event {
            Some(Event::ResourceChanged(changed)) => {
                let id = &changed.resource.as_ref().unwrap().id;
                assert!(!internal.contains(&id.as_str()), "internal event {event:?}");
                assert_ne!(id, &w.dan.id, "{event:?}");
                if let Some(parent) = &changed.parent {
                    assert_eq!(parent.id, w.carla.id, "{event:?}");
                }
            }
            Some(Event::PresenceChanged(_)) => panic!("presence sent to a portal: {event:?}"),
            _ => {}
        }
    }
}

#[apply(backends)]
#[tokio::test]
async fn a_portal_watch_gets_no_event_about_an_internal_activity_and_no_presence(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    let w = world(&app).await;
    // Carla changes once, so a subscription knowing version 1 gets one event at once: proof it took hold
    // (a portal gets no presence to tell it).
    let carla_v2 = ok(CustomerServiceClient::new(app.channel())
        .update_customer(app.setup(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                notes: "prefers email".into(),
                ..w.carla.clone()
            }),
            update_mask: mask(&["notes"]),
            ..Default::default()
        }))
        .await);
    let (portal_tx, mut portal) = watch(&app, &w.portal).await;
    portal_tx
        .send(subscribe(
            vec![reference(
                ResourceType::Customer,
                &w.carla.id,
                w.carla.version,
            )],
            0,
        ))
        .await
        .unwrap();
    let caught_up = events_until(&mut portal, &w.carla.id).await;
    assert_eq!(caught_up.len(), 1, "{caught_up:?}");
    // A staff watcher on the same customer: the portal never shows up in its presence.
    let agent_key = app.mint_key("ana", "agent", None).await;
    let (staff_tx, mut staff) = watch(&app, &agent_key).await;
    staff_tx
        .send(subscribe(
            vec![reference(
                ResourceType::Customer,
                &w.carla.id,
                carla_v2.version,
            )],
            0,
        ))
        .await
        .unwrap();
    let first = within("presence", staff.message()).await.unwrap().unwrap();
    let Some(Event::PresenceChanged(presence)) = first.event else {
        panic!("expected presence, got {first:?}")
    };
    let agents: Vec<_> = presence
        .participants
        .iter()
        .map(|p| p.agent.as_str())
        .collect();
    assert_eq!(agents, ["ana"]);

    // An internal activity, then a public one: the portal's first event is the public one.
    let internal = app
        .create_activity(pb::Activity {
            internal: true,
            ..activity(&w.carla.id, "note to self")
        })
        .await;
    let public = app.create_activity(activity(&w.carla.id, "call")).await;
    let seen = events_until(&mut portal, &public.id).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_nothing_internal_or_foreign(&seen, &w, &[&internal.id, &w.carla_internal.id]);
    // The staff watcher got both.
    let staff_seen = events_until(&mut staff, &public.id).await;
    assert!(staff_seen.iter().any(|e| matches!(&e.event,
        Some(Event::ResourceChanged(c)) if c.resource.as_ref().unwrap().id == internal.id)));

    // Staff make the public activity internal: it leaves the portal's view (DELETED, no fields), and made public
    // again it comes back (CREATED); the staff watcher sees both as updates.
    let mut current = public.clone();
    for (internal, kind) in [
        (true, pb::ChangeKind::Deleted),
        (false, pb::ChangeKind::Created),
    ] {
        current = ok(ActivityServiceClient::new(app.channel())
            .update_activity(app.setup(pb::UpdateActivityRequest {
                activity: Some(pb::Activity {
                    internal,
                    ..current.clone()
                }),
                update_mask: mask(&["internal"]),
                ..Default::default()
            }))
            .await);
        let seen = events_until(&mut portal, &public.id).await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        let Some(Event::ResourceChanged(changed)) = &seen[0].event else {
            panic!("expected a change, got {seen:?}")
        };
        assert_eq!(changed.kind, kind as i32, "{changed:?}");
        assert_eq!(
            changed.resource.as_ref().unwrap().known_version,
            current.version
        );
        if internal {
            assert!(changed.changed_fields.is_empty(), "{changed:?}");
        }
        let staff_seen = events_until(&mut staff, &public.id).await;
        let Some(Event::ResourceChanged(changed)) = &staff_seen.last().unwrap().event else {
            panic!("expected a change, got {staff_seen:?}")
        };
        assert_eq!(changed.kind, pb::ChangeKind::Updated as i32, "{changed:?}");
    }

    // Resuming from the start of the log replays Carla's history without anything internal.
    let (resume_tx, mut resumed) = watch(&app, &w.portal).await;
    resume_tx
        .send(subscribe(
            vec![reference(ResourceType::Customer, &w.carla.id, 0)],
            1,
        ))
        .await
        .unwrap();
    let replay = events_until(&mut resumed, &public.id).await;
    assert!(replay.len() >= 3, "{replay:?}");
    assert_nothing_internal_or_foreign(&replay, &w, &[&internal.id, &w.carla_internal.id]);

    // Subscribing to what it may not see ends the stream with NOT_FOUND.
    for forbidden in [
        reference(ResourceType::Customer, &w.dan.id, 0),
        reference(ResourceType::Request, &w.dan_request.id, 0),
        reference(ResourceType::Activity, &w.carla_internal.id, 0),
        reference(ResourceType::Activity, &w.dan_activity.id, 0),
    ] {
        let (tx, mut events) = watch(&app, &w.portal).await;
        tx.send(subscribe(vec![forbidden.clone()], 0))
            .await
            .unwrap();
        let status = within("refusal", events.message())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::NotFound, "{forbidden:?}: {status:?}");
    }
    drop((portal_tx, staff_tx, resume_tx));
}
