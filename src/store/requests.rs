//! Request (case) repository and its comment thread.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{
    Store, change_log, customers, decode_json, encode_json,
    entity::{activities, comments, delete_where, requests, tuples},
    record,
};
use crate::{
    domain::{
        change::{ChangeKind, NewChange, ResourceKind},
        customer::Audit,
        edit::{Deletion, Edit},
        ids::new_id,
        mask::FieldChange,
        page::Cursor,
        request::{Comment, Request, RequestData, RequestStatus},
        time::now_micros,
    },
    error::{Error, Result},
};

const CANCELLED: &str = "REQUEST_CANCELLED";

pub(super) fn to_active(request: &Request) -> Result<requests::ActiveModel> {
    Ok(requests::ActiveModel {
        id: Set(request.id.clone()),
        version: Set(request.version),
        customer_id: Set(request.customer_id.clone()),
        title: Set(request.data.title.clone()),
        description: Set(request.data.description.clone()),
        status: Set(request.data.status.as_i32()),
        tags: Set(encode_json(&request.data.tags)?),
        close_time: Set(request.close_time),
        create_time: Set(request.audit.create_time),
        update_time: Set(request.audit.update_time),
        created_by: Set(request.audit.created_by.clone()),
        updated_by: Set(request.audit.updated_by.clone()),
    })
}

pub(super) fn from_model(model: requests::Model) -> Result<Request> {
    let status = RequestStatus::from_i32(model.status).ok_or_else(|| {
        Error::internal(format!(
            "request {}: unknown status {}",
            model.id, model.status
        ))
    })?;
    Ok(Request {
        id: model.id,
        version: model.version,
        customer_id: model.customer_id,
        data: RequestData {
            title: model.title,
            description: model.description,
            status,
            tags: decode_json(&model.tags)?,
        },
        close_time: model.close_time,
        audit: Audit {
            create_time: model.create_time,
            update_time: model.update_time,
            created_by: model.created_by,
            updated_by: model.updated_by,
        },
    })
}

record::stored_in!(Request, requests);

fn comment_from_model(model: comments::Model) -> Comment {
    Comment {
        id: model.id,
        request_id: model.request_id,
        text: model.text,
        author: model.author,
        create_time: model.create_time,
    }
}

fn refuse_if_cancelled(request: &Request, what: &str) -> Result<()> {
    if request.data.status.is_final() {
        Err(Error::failed_precondition(
            CANCELLED,
            format!(
                "request {} is cancelled and can no longer {what}",
                request.id
            ),
        ))
    } else {
        Ok(())
    }
}

impl Store {
    pub async fn create_request(
        &self,
        agent: &str,
        customer_id: &str,
        data: RequestData,
    ) -> Result<Request> {
        let now = now_micros();
        let request = Request::created(customer_id, data, agent, now);
        let agent = agent.to_owned();
        let customer_id = customer_id.to_owned();
        self.write("create_request", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                let customer_id = customer_id.as_str();
                customers::find_to_link(txn, customer_id).await?;
                txn.insert_created(agent, &request, now, None).await?;
                Ok(request)
            })
        })
        .await
    }

    pub async fn get_request(&self, id: &str) -> Result<Request> {
        record::find::<Request>(&self.reader(), id).await
    }

    /// Applies the edit if the request is still at its version (see [`record::apply_edit`]). Closing sets
    /// `close_time`, reopening clears it; cancelling deletes the comments and makes the request final.
    pub async fn update_request(&self, agent: &str, edit: Edit<RequestData>) -> Result<Request> {
        let id = edit.id.clone();
        let agent = agent.to_owned();
        self.write("update_request", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                let current = record::find_for_update::<Request>(txn, &id).await?;
                let edited = record::apply_edit(txn, &current, edit).await?;
                refuse_if_cancelled(&current, "change")?;
                let Some((data, changes)) = edited else {
                    return Ok(current);
                };
                let now = now_micros();
                let close_time = match (current.data.status, data.status) {
                    (RequestStatus::Closed, RequestStatus::Closed) => current.close_time,
                    (_, RequestStatus::Closed) => Some(now),
                    _ => None,
                };
                let updated = Request {
                    close_time,
                    ..current.next_version(data, agent, now)
                };
                record::save_version(txn, &updated, current.version).await?;
                if updated.data.status == RequestStatus::Cancelled {
                    delete_where::<comments::Entity>(txn, comments::Column::RequestId.eq(&id))
                        .await?;
                }
                record::log_update(txn, agent, updated, changes, now).await
            })
        })
        .await
    }

    /// Deletes the request and its comments. Its activities stay in the customer's journey, unlinked (each
    /// gets a new version).
    pub async fn delete_request(&self, agent: &str, target: Deletion) -> Result<()> {
        let agent = agent.to_owned();
        self.write("delete_request", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                let id = target.id.as_str();
                let current = record::find_for_update::<Request>(txn, id).await?;
                record::check_seen(&current, target.version)?;
                refuse_if_cancelled(&current, "be deleted")?;
                let now = now_micros();
                let linked: Vec<(String, i64, bool, Option<String>)> = tuples(
                    txn,
                    activities::Entity::find().filter(activities::Column::RequestId.eq(id)),
                    [
                        activities::Column::Id,
                        activities::Column::Version,
                        activities::Column::Internal,
                        activities::Column::CustomerId,
                    ],
                )
                .await?;
                activities::Entity::update_many()
                    .col_expr(
                        activities::Column::RequestId,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(
                        activities::Column::Version,
                        Expr::col(activities::Column::Version).add(1),
                    )
                    .col_expr(activities::Column::UpdateTime, Expr::value(now))
                    .col_expr(activities::Column::UpdatedBy, Expr::value(agent))
                    .filter(activities::Column::RequestId.eq(id))
                    .exec(txn)
                    .await?;
                for (activity_id, version, internal, customer_id) in linked {
                    change_log::append(
                        txn,
                        NewChange {
                            resource: ResourceKind::Activity,
                            resource_id: activity_id,
                            version: version + 1,
                            kind: ChangeKind::Updated,
                            agent: agent.to_owned(),
                            fields: vec![FieldChange {
                                field: "request_id".to_owned(),
                                old: id.into(),
                                new: serde_json::Value::Null,
                            }],
                            parent_id: customer_id,
                            internal,
                            time: now,
                        },
                    )
                    .await?;
                }
                delete_where::<comments::Entity>(txn, comments::Column::RequestId.eq(id)).await?;
                record::delete(txn, agent, &current, now).await?;
                Ok(())
            })
        })
        .await
    }

    /// A customer's requests, newest first, optionally of one status. The customer must exist.
    pub async fn list_requests(
        &self,
        customer_id: &str,
        status: Option<RequestStatus>,
        cursor: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<Request>> {
        customers::find(&self.reader(), customer_id).await?;
        let mut query =
            requests::Entity::find().filter(requests::Column::CustomerId.eq(customer_id));
        if let Some(status) = status {
            query = query.filter(requests::Column::Status.eq(status.as_i32()));
        }
        if let Some(cursor) = cursor {
            query = query.filter(requests::Column::Id.lt(cursor.id.as_str()));
        }
        let query = query.order_by_desc(requests::Column::Id);
        super::fetch(&self.reader(), query, limit, from_model).await
    }

    /// Adds an immutable comment. The request's version does not change (editing it is not disturbed), but the
    /// change log records the new comment so watchers learn of it.
    pub async fn add_comment(
        &self,
        agent: &str,
        request_id: &str,
        text: String,
    ) -> Result<Comment> {
        let agent = agent.to_owned();
        let request_id = request_id.to_owned();
        self.write("add_comment", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                let request_id = request_id.as_str();
                let request = record::find_for_update::<Request>(txn, request_id).await?;
                refuse_if_cancelled(&request, "take comments")?;
                let comment = Comment {
                    id: new_id(),
                    request_id: request.id.clone(),
                    text,
                    author: agent.to_owned(),
                    create_time: now_micros(),
                };
                comments::Entity::insert(comments::ActiveModel {
                    id: Set(comment.id.clone()),
                    request_id: Set(comment.request_id.clone()),
                    text: Set(comment.text.clone()),
                    author: Set(comment.author.clone()),
                    create_time: Set(comment.create_time),
                })
                .exec_without_returning(txn)
                .await?;
                change_log::append(
                    txn,
                    NewChange::updated(
                        agent,
                        &request,
                        vec![FieldChange {
                            field: "comments".to_owned(),
                            old: serde_json::Value::Null,
                            new: serde_json::json!({ "id": comment.id, "text": comment.text }),
                        }],
                        comment.create_time,
                    ),
                )
                .await?;
                Ok(comment)
            })
        })
        .await
    }

    /// A request's comments, oldest first. The request must exist.
    pub async fn list_comments(
        &self,
        request_id: &str,
        cursor: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<Comment>> {
        record::find::<Request>(&self.reader(), request_id).await?;
        let mut query = comments::Entity::find().filter(comments::Column::RequestId.eq(request_id));
        if let Some(cursor) = cursor {
            query = query.filter(comments::Column::Id.gt(cursor.id.as_str()));
        }
        Ok(query
            .order_by_asc(comments::Column::Id)
            .limit(limit)
            .all(&self.reader())
            .await?
            .into_iter()
            .map(comment_from_model)
            .collect())
    }
}
