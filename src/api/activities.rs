//! `ActivityService`: the customer's journey.

use tonic::{Request, Response, Status};

use super::{
    ApiState, PageRequest,
    convert::{UpdateRequest, UpdateTarget},
    hidden, principal, required,
};
use crate::{
    domain::{
        Violations,
        activity::{self, ActivityData},
        contact, ids,
        page::Cursor,
        reason, tags, text,
        time::{check_timestamp, now_micros},
    },
    error::Error,
    pb::{self, activity_service_server::ActivityService},
};

pub struct ActivityApi {
    state: ApiState,
}

impl ActivityApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

/// An activity from the caller, with the defaults it did not give.
struct ActivityInput {
    data: ActivityData,
    /// `occur_time` was not given (create: now; update: keep).
    occur_time_missing: bool,
    /// `entered_by` was empty (create: the acting agent; update: keep).
    entered_by_missing: bool,
}

/// Checks every caller-settable field of `a` (paths under `activity.`) and converts it.
fn activity_input(
    violations: &mut Violations,
    a: pb::Activity,
    region: phonenumber::country::Id,
) -> ActivityInput {
    for (field, value) in [
        ("activity.topic", &a.topic),
        ("activity.notes", &a.notes),
        ("activity.entered_by", &a.entered_by),
        ("activity.contact_name", &a.contact_name),
        ("activity.sales_contact", &a.sales_contact),
        ("activity.salesperson", &a.salesperson),
        ("activity.reference", &a.reference),
    ] {
        text::check_text(violations, field, value);
    }
    let contact_phone = match a.contact_phone.trim() {
        "" => String::new(),
        raw => contact::normalize_phone(raw, region).unwrap_or_else(|e| {
            violations.push("activity.contact_phone", reason::INVALID_PHONE, e);
            String::new()
        }),
    };
    let contact_email = match a.contact_email.trim() {
        "" => String::new(),
        raw => contact::normalize_email(raw).unwrap_or_else(|e| {
            violations.push("activity.contact_email", reason::INVALID_EMAIL, e);
            String::new()
        }),
    };
    let occur_time = a
        .occur_time
        .as_ref()
        .and_then(|t| check_timestamp(violations, "activity.occur_time", t));
    let follow_up_time = a
        .follow_up_time
        .as_ref()
        .and_then(|t| check_timestamp(violations, "activity.follow_up_time", t));
    let data = ActivityData {
        customer_id: ids::check_optional_id(violations, "activity.customer_id", &a.customer_id),
        request_id: ids::check_optional_id(violations, "activity.request_id", &a.request_id),
        channel: super::enum_number::<pb::Channel>(
            violations,
            "activity.channel",
            a.channel,
            "Channel",
        ),
        direction: super::enum_number::<pb::Direction>(
            violations,
            "activity.direction",
            a.direction,
            "Direction",
        ),
        internal: a.internal,
        tags: tags::normalize_tags(violations, "activity.tags", &a.tags),
        topic: a.topic,
        notes: a.notes,
        occur_time: occur_time.unwrap_or_default(),
        follow_up_time,
        entered_by: a.entered_by.trim().to_owned(),
        contact_name: a.contact_name,
        contact_phone,
        contact_email,
        sales_contact: a.sales_contact,
        salesperson: a.salesperson,
        reference: a.reference,
    };
    ActivityInput {
        occur_time_missing: a.occur_time.is_none(),
        entered_by_missing: data.entered_by.is_empty(),
        data,
    }
}

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

#[tonic::async_trait]
impl ActivityService for ActivityApi {
    async fn create_activity(
        &self,
        request: Request<pb::CreateActivityRequest>,
    ) -> Result<Response<pb::Activity>, Status> {
        let caller = principal(&request)?;
        let agent = caller.agent.clone();
        let a = required(request.into_inner().activity, "activity")?;
        let mut violations = Violations::new();
        let mut input = activity_input(&mut violations, a, self.state.region);
        violations.into_result(()).map_err(Error::from)?;
        if let Some(own) = caller.portal_customer() {
            confine_to_portal(&self.state, own, &agent, &mut input).await?;
        }
        let mut data = input.data;
        if input.occur_time_missing {
            data.occur_time = now_micros();
        }
        if input.entered_by_missing || !caller.role.may_enter_for_others() {
            data.entered_by = agent.clone();
        }
        let created = self.state.store.create_activity(&agent, data).await?;
        Ok(Response::new(pb::Activity::from(created)))
    }

    async fn get_activity(
        &self,
        request: Request<pb::GetActivityRequest>,
    ) -> Result<Response<pb::Activity>, Status> {
        let caller = principal(&request)?;
        let mut violations = Violations::new();
        let id = ids::check_id(&mut violations, "id", &request.get_ref().id);
        let id = violations
            .into_result(id.unwrap_or_default())
            .map_err(Error::from)?;
        let found = self.state.store.get_activity(&id).await?;
        if let Some(own) = caller.portal_customer()
            && (found.data.internal || found.data.customer_id.as_deref() != Some(own))
        {
            return Err(hidden("activity", &id).into());
        }
        Ok(Response::new(pb::Activity::from(found)))
    }

    async fn update_activity(
        &self,
        request: Request<pb::UpdateActivityRequest>,
    ) -> Result<Response<pb::Activity>, Status> {
        let caller = principal(&request)?;
        let agent = caller.agent.clone();
        let message = request.into_inner();
        let a = required(message.activity, "activity")?;
        let mut violations = Violations::new();
        let target = UpdateTarget::parse(
            &mut violations,
            UpdateRequest {
                record: "activity",
                id: &a.id,
                version: a.version,
                mask: message.update_mask,
                policy: message.conflict_policy,
                mutable: activity::MUTABLE_FIELDS,
                output_only: activity::OUTPUT_ONLY_FIELDS,
            },
        );
        let mut fields = target.fields;
        let mut field_violations = Violations::within("activity", &fields);
        let input = activity_input(&mut field_violations, a, self.state.region);
        violations.extend(field_violations);
        violations.into_result(()).map_err(Error::from)?;
        // A missing time or author keeps the current one, also under a "*" mask; so does an author an agent key
        // may not name (anyone but itself).
        let may_not_name = !caller.role.may_enter_for_others() && input.data.entered_by != agent;
        fields.retain(|f| {
            !(*f == "occur_time" && input.occur_time_missing
                || *f == "entered_by" && (input.entered_by_missing || may_not_name))
        });
        let updated = self
            .state
            .store
            .update_activity(
                &agent,
                &target.id,
                target.version,
                target.policy,
                &fields,
                input.data,
            )
            .await?;
        Ok(Response::new(pb::Activity::from(updated)))
    }

    async fn delete_activity(
        &self,
        request: Request<pb::DeleteActivityRequest>,
    ) -> Result<Response<()>, Status> {
        let agent = principal(&request)?.agent;
        let target =
            super::convert::Deletion::try_from(request.into_inner()).map_err(Error::from)?;
        self.state
            .store
            .delete_activity(&agent, &target.id, target.version)
            .await?;
        Ok(Response::new(()))
    }

    async fn list_activities(
        &self,
        request: Request<pb::ListActivitiesRequest>,
    ) -> Result<Response<pb::ListActivitiesResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let mut violations = Violations::new();
        let customer_id =
            ids::check_optional_id(&mut violations, "customer_id", &message.customer_id);
        let request_id = ids::check_optional_id(&mut violations, "request_id", &message.request_id);
        if message.customer_id.is_empty() && message.request_id.is_empty() {
            violations.push(
                "customer_id",
                reason::REQUIRED_FIELD,
                "give customer_id or request_id (or both) to list activities",
            );
        }
        let page = PageRequest::parse(
            &mut violations,
            message.page_size,
            &message.page_token,
            &[
                "activities",
                customer_id.as_deref().unwrap_or_default(),
                request_id.as_deref().unwrap_or_default(),
            ],
        );
        violations.into_result(()).map_err(Error::from)?;
        let cursor = page.cursor.as_ref().filter(|c| c.time.is_some());
        if page.cursor.is_some() && cursor.is_none() {
            return Err(Error::invalid(
                "page_token",
                reason::INVALID_PAGE_TOKEN,
                "not an activity page token",
            )
            .into());
        }
        // A portal lists only its own customer's non-internal activities.
        let portal = caller.portal_customer();
        if let Some(own) = portal {
            if let Some(id) = customer_id.as_deref().filter(|id| *id != own) {
                return Err(hidden("customer", id).into());
            }
            if let Some(id) = request_id.as_deref() {
                super::requests::visible_request(&self.state, portal, id).await?;
            }
        }
        let mut activities = self
            .state
            .store
            .list_activities(
                portal.or(customer_id.as_deref()),
                request_id.as_deref(),
                portal.is_none(),
                cursor,
                page.fetch(),
            )
            .await?;
        let next_page_token = page.finish(&mut activities, |a| Cursor {
            time: Some(a.data.occur_time),
            id: a.id.clone(),
        });
        Ok(Response::new(pb::ListActivitiesResponse {
            activities: activities.into_iter().map(pb::Activity::from).collect(),
            next_page_token,
        }))
    }
}
