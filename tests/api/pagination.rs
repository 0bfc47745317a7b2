//! Keyset pagination: no duplicates or gaps while writes happen, default and maximum page sizes, bad input.

use std::{collections::HashSet, future::Future};

use customer_context::pb::{self, activity_service_client::ActivityServiceClient};
use futures::{StreamExt, stream};
use prost_types::Timestamp;
use tonic::{Code, Status, transport::Channel};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

/// Creates the customer Ana with one activity per occur_time, concurrently over several connections.
async fn ana_with_activities(
    app: &TestApp,
    occur_times: Vec<Timestamp>,
) -> (pb::Customer, Vec<pb::Activity>) {
    let ana = app.ana_lopez().await;
    let mut channels: Vec<Channel> = Vec::new();
    for _ in 0..4 {
        channels.push(app.new_channel().await);
    }
    let calls = occur_times.into_iter().enumerate().map(|(i, occur_time)| {
        let mut client = ActivityServiceClient::new(channels[i % channels.len()].clone());
        let call = pb::CreateActivityRequest {
            activity: Some(pb::Activity {
                occur_time: Some(occur_time),
                ..activity(&ana.id, &format!("past #{i}"))
            }),
        };
        async move { ok(client.create_activity(as_agent(SETUP_AGENT, call)).await) }
    });
    let created = within(
        "creating activities",
        stream::iter(calls).buffer_unordered(16).collect::<Vec<_>>(),
    )
    .await;
    (ana, created)
}

/// Newest occur_time first (the given occur_times are distinct).
fn newest_first(mut activities: Vec<pb::Activity>) -> Vec<pb::Activity> {
    activities
        .sort_by_key(|a| std::cmp::Reverse(nanos(a.occur_time.as_ref().expect("occur_time"))));
    activities
}

/// One page of the customer's activities.
async fn activity_page(
    app: &TestApp,
    customer_id: &str,
    page_size: i32,
    page_token: &str,
) -> pb::ListActivitiesResponse {
    app.list_activities(customer_id, "", page_size, page_token)
        .await
        .expect("page")
}

#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_1000_activities_in_pages_of_50_sees_each_once_while_new_ones_arrive(
    backend: Backend,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let start = now().seconds - 30 * 86_400;
    let occur_times = (0..1000).map(|i| timestamp(start + i * 60, 0)).collect();
    let (ana, created) = ana_with_activities(&app, occur_times).await;
    let originals = newest_first(created);
    assert_eq!(originals.len(), 1000);

    let mut writer = ActivityServiceClient::new(app.new_channel().await);
    let mut inserted = Vec::new();
    let mut walked: Vec<pb::Activity> = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        // After the first page, new activities (occur_time now: newer than anything walked) are written while
        // the next page is read.
        let insert = async {
            let mut created = Vec::new();
            if pages > 0 {
                for _ in 0..2 {
                    let call = pb::CreateActivityRequest {
                        activity: Some(activity(&ana.id, "live")),
                    };
                    created.push(ok(writer.create_activity(as_agent("live", call)).await));
                }
            }
            created
        };
        let (page, created) = within("a page and inserts", async {
            tokio::join!(activity_page(&app, &ana.id, 50, &token), insert)
        })
        .await;
        inserted.extend(created);
        pages += 1;
        assert_eq!(page.activities.len(), 50, "page {pages} is full");
        walked.extend(page.activities);
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(pages < 20, "a 21st page of a 1,000-item walk");
        token = page.next_page_token;
    }
    assert_eq!(pages, 20);
    let walked_ids: HashSet<&str> = walked.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(walked_ids.len(), walked.len(), "no duplicates");
    assert_eq!(
        walked, originals,
        "every original activity once, newest first, none of the new ones"
    );
    assert_eq!(inserted.len(), 38);

    // Page sizes: 0 means 50, above 500 means 500.
    for (asked, given) in [(0, 50), (100_000, 500)] {
        let page = activity_page(&app, &ana.id, asked, "").await;
        assert_eq!(page.activities.len(), given, "page size {asked}");
        assert!(!page.next_page_token.is_empty(), "page size {asked}");
    }
    // Everything, new ones included, in pages of 500: the new ones first, then the originals.
    let first = activity_page(&app, &ana.id, 100_000, "").await;
    let second = activity_page(&app, &ana.id, 500, &first.next_page_token).await;
    let third = activity_page(&app, &ana.id, 500, &second.next_page_token).await;
    assert_eq!(third.next_page_token, "");
    let everything: Vec<pb::Activity> =
        [first.activities, second.activities, third.activities].concat();
    assert_eq!(everything.len(), 1038);
    let everything_ids: HashSet<&str> = everything.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(everything_ids.len(), 1038, "no duplicates");
    let newest_ids: HashSet<&str> = everything[..38].iter().map(|a| a.id.as_str()).collect();
    let inserted_ids: HashSet<&str> = inserted.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(newest_ids, inserted_ids, "the new ones come first");
    assert_eq!(
        everything[38..],
        originals[..],
        "then the originals, newest first"
    );
}

#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activities_sharing_one_occur_time_page_without_gaps_or_duplicates(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let same = timestamp(1_700_000_000, 0);
    let (ana, created) = ana_with_activities(&app, vec![same; 120]).await;
    let mut walked = Vec::new();
    let mut token = String::new();
    let mut sizes = Vec::new();
    loop {
        let page = activity_page(&app, &ana.id, 50, &token).await;
        sizes.push(page.activities.len());
        walked.extend(page.activities);
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(sizes.len() < 3, "too many pages: {sizes:?}");
        token = page.next_page_token;
    }
    assert_eq!(sizes, [50, 50, 20]);
    let walked_ids: HashSet<String> = walked.into_iter().map(|a| a.id).collect();
    let created_ids: HashSet<String> = created.into_iter().map(|a| a.id).collect();
    assert_eq!(walked_ids.len(), 120, "no duplicates");
    assert_eq!(walked_ids, created_ids, "no gaps");
}

/// Walks five items in pages of two: `page` answers the items of the page at a token and the next token. Each
/// page holds as many as it should and the last one has no token; returns every item in the order walked.
async fn walk_five_in_pages_of_two<T, P, F>(what: &str, mut page: P) -> Vec<T>
where
    P: FnMut(String) -> F,
    F: Future<Output = (Vec<T>, String)>,
{
    let mut walked = Vec::new();
    let mut token = String::new();
    for expected_len in [2, 2, 1] {
        let (items, next_token) = page(token).await;
        assert_eq!(items.len(), expected_len, "{what}");
        walked.extend(items);
        token = next_token;
    }
    assert_eq!(token, "", "last page has no token ({what})");
    walked
}

#[apply(backends)]
#[tokio::test]
async fn requests_and_search_results_page_newest_first(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let app = &app;
    let everyone = ["Ana", "Ben", "Carl", "Dora", "Emil"].map(|name| customer(name, "Lopez"));
    let mut customers = app.create_customers(everyone).await.to_vec();
    let ana = customers[0].clone();
    customers.reverse();
    for query in ["", "lopez"] {
        let walked = walk_five_in_pages_of_two(&format!("query {query:?}"), |token| async move {
            let page = app.search_customers_page(query, 2, &token).await;
            let page = page.expect("page");
            (page.customers, page.next_page_token)
        })
        .await;
        assert_eq!(walked, customers, "newest first (query {query:?})");
    }

    let mut requests = Vec::new();
    for title in ["one", "two", "three", "four", "five"] {
        requests.push(app.create_request(request(&ana.id, title)).await);
    }
    requests.reverse();
    let customer_id = ana.id.as_str();
    let walked = walk_five_in_pages_of_two("requests", |page_token| async move {
        let call = pb::ListRequestsRequest {
            customer_id: customer_id.to_owned(),
            status: pb::RequestStatus::Unspecified as i32,
            page_size: 2,
            page_token,
        };
        let page = ok(app.requests().list_requests(call).await);
        (page.requests, page.next_page_token)
    })
    .await;
    assert_eq!(walked, requests, "newest first");
}

/// Calls every list method with `page_size` and `page_token`; each must fail.
async fn list_everything(
    app: &TestApp,
    page_size: i32,
    page_token: &str,
) -> Vec<(&'static str, Status)> {
    let (ana, broken) = app.ana_with_a_broken_request().await;
    let requests = pb::ListRequestsRequest {
        customer_id: ana.id.clone(),
        status: 0,
        page_size,
        page_token: page_token.to_owned(),
    };
    let comments = pb::ListCommentsRequest {
        request_id: broken.id.clone(),
        page_size,
        page_token: page_token.to_owned(),
    };
    vec![
        (
            "SearchCustomers",
            err(app.search_customers_page("", page_size, page_token).await),
        ),
        (
            "ListRequests",
            err(app.requests().list_requests(requests).await),
        ),
        (
            "ListComments",
            err(app.requests().list_comments(comments).await),
        ),
        (
            "ListActivities",
            err(app
                .list_activities(&ana.id, "", page_size, page_token)
                .await),
        ),
    ]
}

/// Every list method refuses `page_size` with `page_token` as INVALID_ARGUMENT with ErrorInfo `reason`.
async fn assert_every_list_refuses(app: &TestApp, page_size: i32, page_token: &str, reason: &str) {
    for (method, status) in list_everything(app, page_size, page_token).await {
        let context = format!("{method} {page_token:?}: {status:?}");
        assert_eq!(status.code(), Code::InvalidArgument, "{context}");
        assert_eq!(error_info(&status).reason, reason, "{context}");
    }
}

#[apply(backends)]
#[tokio::test]
async fn a_negative_page_size_is_refused_everywhere(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    assert_every_list_refuses(&app, -1, "", "INVALID_PAGE_SIZE").await;
}

#[apply(backends)]
#[tokio::test]
async fn a_malformed_page_token_is_refused_everywhere(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    for token in ["garbage!!", "AAAA", "eyJub3QiOiJhIHRva2VuIn0"] {
        assert_every_list_refuses(&app, 10, token, "INVALID_PAGE_TOKEN").await;
    }
}
