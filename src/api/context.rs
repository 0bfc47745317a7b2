//! `ContextService`: the router's entry point when a call, chat or email arrives, and the agent's Recent list.

use super::{Call, resources::resource_ref};
use crate::domain::principal::Role;
use crate::{
    domain::{
        Violations,
        change::ResourceKind,
        contact, page, reason,
        text::{self, MAX_TEXT_CHARS},
        time::{now_micros, to_timestamp},
    },
    error::Error,
    pb,
    store::{OpenContext, Prefill, RequestPolicy},
};

fn request_policy(violations: &mut Violations, value: i32) -> RequestPolicy {
    match pb::RequestPolicy::try_from(value) {
        Ok(pb::RequestPolicy::Unspecified | pb::RequestPolicy::AttachOrCreate) => {
            RequestPolicy::AttachOrCreate
        }
        Ok(pb::RequestPolicy::AttachOnly) => RequestPolicy::AttachOnly,
        Ok(pb::RequestPolicy::None) => RequestPolicy::None,
        Err(_) => {
            violations.push(
                "request_policy",
                reason::INVALID_ENUM_VALUE,
                format!("{value} is not a RequestPolicy"),
            );
            RequestPolicy::default()
        }
    }
}

/// Checks an `OpenContext` call and converts it; the routed agent defaults to `acting`.
fn open_context_input(
    violations: &mut Violations,
    m: pb::OpenContextRequest,
    region: phonenumber::country::Id,
    acting: &str,
) -> OpenContext {
    if m.interaction_id.trim().is_empty() {
        text::check_required_text(violations, "interaction_id", &m.interaction_id);
    } else {
        text::check_key_text(violations, "interaction_id", &m.interaction_id);
    }
    for (field, value) in [
        ("handle", &m.handle),
        ("display_name", &m.display_name),
        ("topic", &m.topic),
        ("agent", &m.agent),
    ] {
        text::check_text(violations, field, value);
    }
    super::enum_number::<pb::Channel>(violations, "channel", m.channel);
    super::enum_number::<pb::Direction>(violations, "direction", m.direction);
    let policy = request_policy(violations, m.request_policy);
    let phone = match m.phone.trim() {
        "" => None,
        raw => contact::normalize_phone(raw, region)
            .map_err(|e| violations.push("phone", reason::INVALID_PHONE, e))
            .ok(),
    };
    let email = match m.email.trim() {
        "" => None,
        raw => contact::normalize_email(raw)
            .map_err(|e| violations.push("email", reason::INVALID_EMAIL, e))
            .ok(),
    };
    let handle = Some(contact::normalize_handle(&m.handle)).filter(|h| !h.is_empty());
    if m.phone.trim().is_empty() && m.email.trim().is_empty() && handle.is_none() {
        // Each of the three would do, so each is named: a form marks all of them.
        for field in ["phone", "email", "handle"] {
            violations.push(
                field,
                reason::REQUIRED_FIELD,
                "give at least one of phone, email or handle to identify the caller",
            );
        }
    }
    let agent = match m.agent.trim() {
        "" => acting.to_owned(),
        agent => agent.to_owned(),
    };
    let caller = phone
        .clone()
        .or_else(|| email.clone())
        .or_else(|| handle.clone())
        .unwrap_or_else(|| m.display_name.trim().to_owned());
    let (first_name, last_name) = split_name(&m.display_name);
    OpenContext {
        request_title: request_title(&m.topic, m.channel, m.direction, &caller),
        prefill: Prefill {
            first_name,
            last_name,
            email: email.clone().unwrap_or_default(),
            phone: phone.clone().unwrap_or_default(),
        },
        interaction_id: m.interaction_id,
        channel: m.channel,
        direction: m.direction,
        phone,
        email,
        handle,
        display_name: m.display_name,
        topic: m.topic,
        agent,
        policy,
    }
}

/// First and last name from a display name: `"Ana García"` → (`Ana`, `García`), `"Mary Ann Smith"` →
/// (`Mary Ann`, `Smith`), `"García, Ana"` → (`Ana`, `García`). A name without letters, or an address, gives
/// nothing: chat and email channels often show the contact point as the name.
pub fn split_name(display_name: &str) -> (String, String) {
    let name = display_name.trim();
    if name.contains('@') || !name.chars().any(char::is_alphabetic) {
        return (String::new(), String::new());
    }
    let join = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((last, first)) = name.split_once(',') {
        return (join(first), join(last));
    }
    let words: Vec<&str> = name.split_whitespace().collect();
    match words.split_last() {
        Some((last, first)) if !first.is_empty() => (first.join(" "), (*last).to_owned()),
        _ => (join(name), String::new()),
    }
}

/// The title of a request opened for an interaction: its topic, else what it was and who
/// (`"Voice call from +14155550100"`).
pub fn request_title(topic: &str, channel: i32, direction: i32, caller: &str) -> String {
    let topic = topic.trim();
    if !topic.is_empty() {
        return topic.to_owned();
    }
    let what = match pb::Channel::try_from(channel) {
        Ok(pb::Channel::Voice) => "Voice call",
        Ok(pb::Channel::Chat) => "Chat",
        Ok(pb::Channel::Email) => "Email",
        Ok(pb::Channel::Sms) => "SMS",
        Ok(pb::Channel::Social) => "Social message",
        Ok(pb::Channel::Web) => "Web contact",
        Ok(pb::Channel::InPerson) => "Visit",
        _ => "Contact",
    };
    let title = match (
        caller.is_empty(),
        direction == pb::Direction::Outgoing as i32,
    ) {
        (true, _) => what.to_owned(),
        (false, true) => format!("{what} to {caller}"),
        (false, false) => format!("{what} from {caller}"),
    };
    title.chars().take(MAX_TEXT_CHARS).collect()
}

pub async fn open_context(
    Call(state, caller, message): Call<'_, pb::OpenContextRequest>,
) -> Result<pb::OpenContextResponse, Error> {
    let agent = caller.agent;
    let mut violations = Violations::new();
    let input = open_context_input(&mut violations, message, state.region, &agent);
    violations.into_result(())?;
    let result = state.store.open_context(&agent, &input).await?;
    let replayed = result.replayed;
    let response = pb::OpenContextResponse::from(result);
    if !replayed {
        state.hub.route(&input.agent, routed(&input, &response));
    }
    Ok(response)
}

/// The screen-pop of an interaction, for the gadgets of the agent it was routed to.
fn routed(input: &OpenContext, response: &pb::OpenContextResponse) -> pb::InteractionRouted {
    let customer_ref = |c: &pb::Customer| resource_ref(ResourceKind::Customer, &c.id, c.version);
    pb::InteractionRouted {
        interaction_id: input.interaction_id.clone(),
        channel: input.channel,
        direction: input.direction,
        customer: response.customer.as_ref().map(customer_ref),
        candidates: response.candidates.iter().map(customer_ref).collect(),
        prefill: response.prefill.clone(),
        activity: response
            .activity
            .as_ref()
            .map(|a| resource_ref(ResourceKind::Activity, &a.id, a.version)),
        request: response
            .request
            .as_ref()
            .map(|r| resource_ref(ResourceKind::Request, &r.id, r.version)),
        route_time: Some(to_timestamp(now_micros())),
    }
}

pub async fn list_recent_customers(
    Call(state, caller, message): Call<'_, pb::ListRecentCustomersRequest>,
) -> Result<pb::ListRecentCustomersResponse, Error> {
    let mut violations = Violations::new();
    let agent = message.agent.trim();
    text::check_required_text(&mut violations, "agent", agent);
    let limit = page::page_size(&mut violations, "page_size", message.page_size);
    violations.into_result(())?;
    // What an agent opened is their own business; an admin (a supervisor) may read anyone's list.
    if caller.role == Role::Agent && agent != caller.agent {
        return Err(Error::permission_denied(
            "NOT_OWN_RECENT_LIST",
            format!(
                "agent {:?} may list only their own recent customers, not those of {agent:?}",
                caller.agent
            ),
        ));
    }
    // The agent's own views recorded so far are written first, so the list shows what they just opened.
    state.recent.flush().await;
    let customers = state.store.recent_customers(agent, limit).await?;
    Ok(pb::ListRecentCustomersResponse {
        customers: customers.into_iter().map(pb::Customer::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str) -> (String, String) {
        split_name(name)
    }

    fn pair(first: &str, last: &str) -> (String, String) {
        (first.to_owned(), last.to_owned())
    }

    #[test]
    fn display_names_split_into_first_and_last() {
        assert_eq!(split("Ana García"), pair("Ana", "García"));
        assert_eq!(split("  Mary  Ann   Smith "), pair("Mary Ann", "Smith"));
        assert_eq!(split("García López, Ana"), pair("Ana", "García López"));
        assert_eq!(split("Zoë"), pair("Zoë", ""));
        assert_eq!(split("+1 415 555 0100"), pair("", ""));
        assert_eq!(split("ana@example.com"), pair("", ""));
        assert_eq!(split(""), pair("", ""));
    }

    #[test]
    fn titles_come_from_the_topic_or_the_channel_and_caller() {
        let voice = pb::Channel::Voice as i32;
        let incoming = pb::Direction::Incoming as i32;
        let outgoing = pb::Direction::Outgoing as i32;
        assert_eq!(request_title(" Billing ", voice, incoming, "+1"), "Billing");
        assert_eq!(
            request_title("", voice, incoming, "+14155550100"),
            "Voice call from +14155550100"
        );
        assert_eq!(
            request_title("", pb::Channel::Email as i32, outgoing, "a@b.co"),
            "Email to a@b.co"
        );
        assert_eq!(request_title("", 0, 0, ""), "Contact");
        let long = "x".repeat(MAX_TEXT_CHARS);
        assert_eq!(
            request_title("", voice, incoming, &long).chars().count(),
            MAX_TEXT_CHARS
        );
    }

    #[test]
    fn open_context_input_reports_every_violation() {
        let mut violations = Violations::new();
        let m = pb::OpenContextRequest {
            phone: "555-CALL-NOW".to_owned(),
            email: "not-an-email".to_owned(),
            channel: 99,
            request_policy: -1,
            ..Default::default()
        };
        open_context_input(&mut violations, m, phonenumber::country::Id::US, "ana");
        let found: Vec<(&str, &str)> = violations
            .iter()
            .map(|v| (v.field.as_str(), v.reason))
            .collect();
        assert_eq!(
            found,
            [
                ("interaction_id", reason::REQUIRED_FIELD),
                ("channel", reason::INVALID_ENUM_VALUE),
                ("request_policy", reason::INVALID_ENUM_VALUE),
                ("phone", reason::INVALID_PHONE),
                ("email", reason::INVALID_EMAIL),
            ]
        );
    }
}
