//! Requests and their comments.

use crate::{
    domain::{
        request::{self, Comment},
        time::to_timestamp,
    },
    pb,
};

impl From<request::Request> for pb::Request {
    fn from(r: request::Request) -> Self {
        pb::Request {
            id: r.id,
            version: r.version,
            customer_id: r.customer_id,
            title: r.data.title,
            description: r.data.description,
            status: r.data.status.as_i32(),
            tags: r.data.tags,
            create_time: Some(to_timestamp(r.audit.create_time)),
            update_time: Some(to_timestamp(r.audit.update_time)),
            close_time: r.close_time.map(to_timestamp),
            created_by: r.audit.created_by,
            updated_by: r.audit.updated_by,
        }
    }
}

impl From<Comment> for pb::Comment {
    fn from(c: Comment) -> Self {
        pb::Comment {
            id: c.id,
            request_id: c.request_id,
            text: c.text,
            author: c.author,
            create_time: Some(to_timestamp(c.create_time)),
        }
    }
}
