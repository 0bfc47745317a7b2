//! `ActivityService`: the customer's journey.

use super::{ApiState, Call, Paged, convert::ActivityInput, hidden};
use crate::{
    domain::{
        Violations, activity::Activity, edit::Edit, ids, page::Cursor, reason, time::now_micros,
    },
    error::Error,
    pb,
};

/// What a portal may add: an incoming, non-internal activity of its own customer (and of one of its requests),
/// entered by the portal itself. Another customer or request is NOT_FOUND, as if it did not exist.
async fn confine_to_portal(
    state: &ApiState,
    own: &str,
    agent: &str,
    input: &mut ActivityInput,
) -> Result<(), Error> {
    let data = &mut input.data;
    if data.internal || data.direction != pb::Direction::Incoming as i32 {
        return Err(Error::permission_denied(
            "PORTAL_INCOMING_ONLY",
            "a portal key may only add incoming activities (direction DIRECTION_INCOMING, internal false)",
        ));
    }
    match data.customer_id.as_deref() {
        Some(id) if id != own => return Err(hidden("customer", id)),
        Some(_) => {}
        None => data.customer_id = Some(own.to_owned()),
    }
    if let Some(id) = data.request_id.as_deref() {
        super::requests::visible_request(state, Some(own), id).await?;
    }
    data.entered_by = agent.to_owned();
    input.entered_by_missing = false;
    Ok(())
}

pub async fn create_activity(
    Call(state, caller, message): Call<'_, pb::CreateActivityRequest>,
) -> Result<Activity, Error> {
    let agent = caller.agent.clone();
    let mut input = ActivityInput::try_from((message, state.region))?;
    if let Some(own) = caller.portal_customer() {
        confine_to_portal(state, own, &agent, &mut input).await?;
    }
    let mut data = input.data;
    if input.occur_time_missing {
        data.occur_time = now_micros();
    }
    if input.entered_by_missing || !caller.role.may_enter_for_others() {
        data.entered_by = agent.clone();
    }
    state.store.create_activity(&agent, data).await
}

pub async fn get_activity(
    Call(state, caller, message): Call<'_, pb::GetActivityRequest>,
) -> Result<Activity, Error> {
    let id = ids::require_id("id", &message.id)?;
    let found = state.store.get_activity(&id).await?;
    if let Some(own) = caller.portal_customer()
        && (found.data.internal || found.data.customer_id.as_deref() != Some(own))
    {
        return Err(hidden("activity", &id));
    }
    Ok(found)
}

pub async fn update_activity(
    Call(state, caller, message): Call<'_, pb::UpdateActivityRequest>,
) -> Result<Activity, Error> {
    let agent = caller.agent.clone();
    let edit = Edit::<ActivityInput>::try_from((message, state.region))?;
    // A missing time or author keeps the current one, also under a "*" mask; so does an author an agent key
    // may not name (anyone but itself).
    let edit = edit.map(|input, fields| {
        let may_not_name = !caller.role.may_enter_for_others() && input.data.entered_by != agent;
        fields.retain(|f| {
            !(*f == "occur_time" && input.occur_time_missing
                || *f == "entered_by" && (input.entered_by_missing || may_not_name))
        });
        input.data
    });
    state.store.update_activity(&agent, edit).await
}

pub async fn list_activities(
    Call(state, caller, message): Call<'_, pb::ListActivitiesRequest>,
) -> Result<pb::ListActivitiesResponse, Error> {
    let mut violations = Violations::new();
    let customer_id = ids::check_optional_id(&mut violations, "customer_id", &message.customer_id);
    let request_id = ids::check_optional_id(&mut violations, "request_id", &message.request_id);
    if message.customer_id.is_empty() && message.request_id.is_empty() {
        violations.push(
            "customer_id",
            reason::REQUIRED_FIELD,
            "give customer_id or request_id (or both) to list activities",
        );
    }
    let page = message.page(
        &mut violations,
        &[
            "activities",
            customer_id.as_deref().unwrap_or_default(),
            request_id.as_deref().unwrap_or_default(),
        ],
    );
    violations.into_result(())?;
    let cursor = page.cursor.as_ref().filter(|c| c.time.is_some());
    if page.cursor.is_some() && cursor.is_none() {
        return Err(Error::invalid(
            "page_token",
            reason::INVALID_PAGE_TOKEN,
            "not an activity page token",
        ));
    }
    // A portal lists only its own customer's non-internal activities.
    let portal = caller.portal_customer();
    if let Some(own) = portal {
        if let Some(id) = customer_id.as_deref().filter(|id| *id != own) {
            return Err(hidden("customer", id));
        }
        if let Some(id) = request_id.as_deref() {
            super::requests::visible_request(state, portal, id).await?;
        }
    }
    let rows = state
        .store
        .list_activities(
            portal.or(customer_id.as_deref()),
            request_id.as_deref(),
            portal.is_none(),
            cursor,
            page.fetch(),
        )
        .await?;
    Ok(page.answer(
        rows,
        |a| Cursor::after(a.data.occur_time, &a.id),
        pb::Activity::from,
    ))
}
